#!/bin/sh
# sik boot hook (POSIX sh, busybox compatible), written by `sik boot generate`.
# Runs inside a live system's own initramfs (or as its init= wrapper) and
#  1. finds the boot medium (the partition holding the ISO file),
#  2. links the ExtensionImages of this architecture and the overlay into
#     the new root with `sik link` (signatures checked against boot/keys),
#  3. mounts the persistent home (home.img on the medium, or the partition
#     labelled SIK-HOME) on NEWROOT/home,
#  4. makes boot/customize/init run once in the booted system.
# Usage: boot.sh NEWROOT [MEDIUM]
NEWROOT="${1:-/}"
MEDIUM="${2:-}"
log() { echo "sik: $*" >&2; }

if [ -z "$MEDIUM" ]; then
	for d in @CANDIDATES@; do
		if [ -f "$d/@MARKER@" ]; then MEDIUM="$d"; break; fi
	done
fi
# Any other mount point that holds the medium (frameworks not described by
# a family file, or a family file that names the wrong place).
if [ -z "$MEDIUM" ] && [ -r /proc/mounts ]; then
	while read -r _dev mnt _rest; do
		if [ -f "$mnt/@MARKER@" ]; then MEDIUM="$mnt"; break; fi
	done < /proc/mounts
fi
if [ -z "$MEDIUM" ]; then
	log "boot medium not found (looked in: @CANDIDATES@ and every mount point); nothing linked"
	exit 0
fi
log "boot medium at $MEDIUM, new root $NEWROOT"
SIK=/sik/sik
[ -x "$SIK" ] || SIK="$MEDIUM/boot/sik/sik"

ARCH=$(uname -m 2>/dev/null)
case "$ARCH" in
	i?86) ARCH=i686 ;;
	armv7*) ARCH=armv7l ;;
esac

# 2. ExtensionImages and overlay.
set --
for f in "$MEDIUM/boot/extensions/$ARCH/"*.ExtensionImage "$MEDIUM/boot/customize/$ARCH/"*.ExtensionImage; do
	[ -f "$f" ] && set -- "$@" "$f"
done
[ -d "$MEDIUM/boot/customize/overlay" ] && set -- "$@" "$MEDIUM/boot/customize/overlay"
# The state (mounts of the images) lives inside the new root but not below
# its /run: the initramfs's /run is moved over NEWROOT/run at switch_root,
# which would hide mounts made there.
STATE="$NEWROOT/var/lib/sik/extensions"
[ "$NEWROOT" = "/" ] && STATE=/run/sik/extensions
if [ $# -gt 0 ]; then
	log "linking $# source(s) into $NEWROOT"
	"$SIK" link "$@" --root "$NEWROOT" --trust "$MEDIUM/boot/keys" --state "$STATE"
	rc=$?
	case $rc in
	0) log "link done" ;;
	1) log "link done; some sources were refused (reasons above)" ;;
	*) log "link failed with status $rc" ;;
	esac
fi

# 3. Persistent home.
mount_home() {
	mkdir -p "$NEWROOT/home" 2>/dev/null
	# Live initramfs images do not always load these before they need them.
	modprobe loop 2>/dev/null
	modprobe ext4 2>/dev/null
	if [ -f "$MEDIUM/home.img" ]; then
		# The medium may be mounted read-only (live-boot mounts findiso ro);
		# `test -w` says yes to root even there, so read the mount options.
		medium_ro=""
		while read -r _dev _mnt _type _opts _rest; do
			[ "$_mnt" = "$MEDIUM" ] && case ",$_opts," in *,ro,*) medium_ro=1 ;; *) medium_ro="" ;; esac
		done < /proc/mounts
		if [ -n "$medium_ro" ]; then
			mount -o remount,rw "$MEDIUM" 2>/dev/null || log "home: cannot remount $MEDIUM read-write"
		fi
		if mount -t ext4 -o loop "$MEDIUM/home.img" "$NEWROOT/home" 2>/dev/null; then
			log "home: $MEDIUM/home.img mounted on /home"
			return 0
		fi
		loopdev=$(losetup -f 2>/dev/null)
		if [ -n "$loopdev" ] && losetup "$loopdev" "$MEDIUM/home.img" 2>/dev/null; then
			if mount -t ext4 "$loopdev" "$NEWROOT/home"; then
				log "home: $MEDIUM/home.img mounted on /home ($loopdev)"
				return 0
			fi
			losetup -d "$loopdev" 2>/dev/null
		fi
		log "home: cannot mount $MEDIUM/home.img"
	fi
	dev=""
	[ -e /dev/disk/by-label/SIK-HOME ] && dev=/dev/disk/by-label/SIK-HOME
	[ -z "$dev" ] && dev=$(findfs LABEL=SIK-HOME 2>/dev/null)
	[ -z "$dev" ] && dev=$(blkid -L SIK-HOME 2>/dev/null)
	if [ -n "$dev" ]; then
		if mount "$dev" "$NEWROOT/home"; then
			log "home: $dev (SIK-HOME) mounted on /home"
		else
			log "home: cannot mount $dev (SIK-HOME)"
		fi
	fi
}
mount_home

# 4. boot/customize/init, once in the booted system.
if [ -f "$MEDIUM/boot/customize/init" ]; then
	mkdir -p "$NEWROOT/etc/sik"
	cp "$MEDIUM/boot/customize/init" "$NEWROOT/etc/sik/customize-init" && chmod 0755 "$NEWROOT/etc/sik/customize-init"
	if [ -d "$NEWROOT/etc/systemd/system" ]; then
		mkdir -p "$NEWROOT/etc/systemd/system/multi-user.target.wants"
		cat > "$NEWROOT/etc/systemd/system/sik-customize.service" <<UNIT
[Unit]
Description=SystemImageKit customization (boot/customize/init)
After=local-fs.target
ConditionPathExists=/etc/sik/customize-init

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /etc/sik/customize-init
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
		ln -sf ../sik-customize.service "$NEWROOT/etc/systemd/system/multi-user.target.wants/sik-customize.service"
		log "customize/init will run as sik-customize.service"
	elif [ "$NEWROOT" = "/" ]; then
		log "running customize/init"
		/bin/sh /etc/sik/customize-init
	else
		log "no systemd in the new root: running customize/init in a chroot now"
		chroot "$NEWROOT" /bin/sh /etc/sik/customize-init
	fi
fi
exit 0
