#!/bin/sh
# sik: dracut pre-pivot hook, written by `sik boot generate` (sourced by dracut).
# The family file's new root, single-quoted by generate; dracut's NEWROOT wins.
sik_newroot=@NEWROOT@
[ -x /sik/boot.sh ] && /sik/boot.sh "${NEWROOT:-$sik_newroot}"
