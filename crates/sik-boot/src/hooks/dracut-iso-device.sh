#!/bin/sh
# sik: dracut initqueue/settled hook, written by `sik boot generate` (sourced
# by dracut's initqueue on each pass after udev settled, until the root is
# found): makes the ISO file named by sik.iso= a block device.
[ -x /sik/iso-device.sh ] && /sik/iso-device.sh
