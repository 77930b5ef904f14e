#!/bin/sh
# sik: dracut pre-pivot hook, written by `sik boot generate` (sourced by dracut).
[ -x /sik/boot.sh ] && /sik/boot.sh "${NEWROOT:-@NEWROOT@}"
