#!/bin/sh
# sik: the ISO file as a block device, written by `sik boot generate`.
# Run early in the distribution's initramfs, before its root lookup gives up
# (dracut: every pass of the initqueue once udev has settled). With the
# kernel argument sik.iso=UUID:PATH it mounts the filesystem whose UUID is
# UUID (the medium, as GRUB's probe names it) read-only at MNT and attaches
# the ISO file PATH on it to a read-only loop device. udev then reads the
# ISO 9660 label and UUID from that device, so root=live:CDLABEL=LABEL (or
# any by-label or by-uuid lookup) finds it as if the ISO were a CD.
# Quietly does nothing without sik.iso=, and once done.
MNT=@MEDIUM@
DONE=/run/sik/iso-device
log() { echo "sik: $*" >&2; }

[ -e "$DONE" ] && exit 0
arg=""
set -f
# shellcheck disable=SC2013
for w in $(cat /proc/cmdline); do
	case "$w" in sik.iso=*) arg="${w#sik.iso=}" ;; esac
done
set +f
[ -n "$arg" ] || exit 0
uuid="${arg%%:*}"
iso="${arg#*:}"
case "$iso" in
/*) ;;
*)
	log "sik.iso=$arg: no ISO path after the UUID; the ISO is not made a block device"
	mkdir -p /run/sik && : > "$DONE"
	exit 0
	;;
esac

dev=""
[ -e "/dev/disk/by-uuid/$uuid" ] && dev="/dev/disk/by-uuid/$uuid"
[ -n "$dev" ] || dev=$(blkid -U "$uuid" 2>/dev/null)
if [ -z "$dev" ]; then
	# GRUB and udev may differ in case (FAT serials are hex digits).
	want=$(echo "$uuid" | tr 'a-f' 'A-F')
	for d in /dev/disk/by-uuid/*; do
		[ "$(echo "${d##*/}" | tr 'a-f' 'A-F')" = "$want" ] && dev="$d" && break
	done
fi
if [ -z "$dev" ]; then
	# Not there yet: the initqueue runs this again after the next event.
	[ -e /run/sik/iso-device.waiting ] || log "waiting for the medium (filesystem UUID $uuid)"
	mkdir -p /run/sik && : > /run/sik/iso-device.waiting
	exit 0
fi
modprobe -q loop 2>/dev/null
mkdir -p "$MNT"
if ! grep -q " $MNT " /proc/mounts; then
	if ! mount -o ro "$dev" "$MNT"; then
		log "cannot mount the medium $dev at $MNT; trying again later"
		exit 0
	fi
fi
if [ ! -f "$MNT$iso" ]; then
	log "$iso is not on the medium $dev; the ISO is not made a block device"
	umount "$MNT" 2>/dev/null
	: > "$DONE"
	exit 0
fi
loop=$(losetup -r -f --show "$MNT$iso")
if [ -z "$loop" ]; then
	log "losetup of $MNT$iso failed; trying again later"
	exit 0
fi
echo "$loop $dev $iso" > "$DONE"
log "$iso (on $dev, mounted at $MNT) is the block device $loop"
exit 0
