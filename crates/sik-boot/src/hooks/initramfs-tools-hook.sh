#!/bin/sh
# sik: initramfs-tools hook, written by `sik boot generate`.
[ "$1" = prereqs ] && exit 0
/sik/boot.sh "${rootmnt:-@NEWROOT@}"
exit 0
