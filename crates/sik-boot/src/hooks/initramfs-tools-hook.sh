#!/bin/sh
# sik: initramfs-tools hook, written by `sik boot generate`.
# The family file's new root, single-quoted by generate; rootmnt wins.
sik_newroot=@NEWROOT@
[ "$1" = prereqs ] && exit 0
/sik/boot.sh "${rootmnt:-$sik_newroot}"
exit 0
