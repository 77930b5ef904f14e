#!/bin/sh
# sik boot hook (POSIX sh, busybox compatible), written by `sik boot generate`.
# Runs inside a live system's own initramfs (or as its init= wrapper) and
#  1. finds the boot medium (the partition holding the ISO file),
#  2. links the ExtensionImages of this architecture (shared ones and those
#     of the booted ISO, named by the kernel argument sik.iso-name=STEM) and the
#     overlay into the new root with `sik link` (signatures checked against
#     boot/keys), and puts the AppImages of Applications/ into its menu
#     (`sik integrate`),
#  3. mounts the persistent home (home.img on the medium, or the partition
#     labelled SIK-HOME) on NEWROOT/home,
#  4. makes boot/customize/init run once in the booted system.
# Usage: boot.sh NEWROOT [MEDIUM]
# Values filled in by `sik boot generate` (single-quoted there):
# where family files say the medium may be mounted, the file marking it,
# and the link flags the medium's boot/customize/policy.toml allows.
CANDIDATES=@CANDIDATES@
MARKER=@MARKER@
LINK_POLICY=@LINK_POLICY@
NEWROOT="${1:-/}"
MEDIUM="${2:-}"
log() { echo "sik: $*" >&2; }

# The factory-state entry of an ISO that needs this initrd to be found (the
# ISO as a block device) passes sik.factory: then nothing of ours is applied.
case " $(cat /proc/cmdline 2>/dev/null) " in
*" sik.factory "*)
	log "factory state (sik.factory): no extension, overlay, customization or home"
	exit 0
	;;
esac

if [ -z "$MEDIUM" ]; then
	for d in $CANDIDATES; do
		if [ -f "$d/$MARKER" ]; then MEDIUM="$d"; break; fi
	done
fi
# Any other mount point that holds the medium (frameworks not described by
# a family file, or a family file that names the wrong place).
if [ -z "$MEDIUM" ] && [ -r /proc/mounts ]; then
	while read -r _dev mnt _rest; do
		if [ -f "$mnt/$MARKER" ]; then MEDIUM="$mnt"; break; fi
	done < /proc/mounts
fi
if [ -z "$MEDIUM" ]; then
	log "boot medium not found (looked in: $CANDIDATES and every mount point); nothing linked"
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

# Signed images with a hash tree are mounted through dm-verity (the kernel
# checks each block as it is read). A live initramfs may lack the modules:
# load them with its modprobe, else from the new root's lib/modules
# (dependencies from modules.dep first; .ko.xz/.zst/.gz unpacked to /tmp).
# Without them sik checks each image whole, and says so per image.
load_dm_verity() {
	if [ -d /sys/module/dm_verity ]; then
		log "dm-verity: already loaded"
		return 0
	fi
	if modprobe dm-verity 2>/dev/null && [ -d /sys/module/dm_verity ]; then
		log "dm-verity: loaded from the initramfs"
		return 0
	fi
	_dir="$NEWROOT/lib/modules/$(uname -r)"
	[ -f "$_dir/modules.dep" ] || _dir="$NEWROOT/usr/lib/modules/$(uname -r)"
	if [ ! -f "$_dir/modules.dep" ]; then
		log "dm-verity: no module in the initramfs or $_dir; images are checked whole"
		return 1
	fi
	_line=$(grep -E '(^|/)dm-verity\.ko(\.(xz|zst|gz))?:' "$_dir/modules.dep")
	if [ -z "$_line" ]; then
		log "dm-verity: not in $_dir/modules.dep; images are checked whole"
		return 1
	fi
	# "dm-verity.ko: dep1 dep2 …" loads as dep… (last first), then dm-verity.
	_mods="${_line%%:*}"
	for _m in ${_line#*:}; do _mods="$_m $_mods"; done
	for _m in $_mods; do
		_f="$_dir/$_m"
		case "$_m" in
		*.xz) xz -dc "$_f" > /tmp/sik-mod.ko 2>/dev/null || unxz -c "$_f" > /tmp/sik-mod.ko ;;
		*.zst) zstd -dc "$_f" > /tmp/sik-mod.ko ;;
		*.gz) gzip -dc "$_f" > /tmp/sik-mod.ko ;;
		*) cp "$_f" /tmp/sik-mod.ko ;;
		esac
		insmod /tmp/sik-mod.ko 2>/dev/null
		rm -f /tmp/sik-mod.ko
	done
	if [ -d /sys/module/dm_verity ]; then
		log "dm-verity: loaded from $_dir"
	else
		log "dm-verity: could not be loaded from $_dir; images are checked whole"
		return 1
	fi
}

# The booted ISO's own ExtensionImages: boot/extensions/STEM/ARCH/, where
# STEM comes from the kernel argument sik.iso-name=STEM that generate puts
# into each ISO's menu entry (a plain file name; anything else is ignored).
ISO_STEM=""
if [ -r /proc/cmdline ]; then
	set -f
	# shellcheck disable=SC2013
	for a in $(cat /proc/cmdline); do
		case "$a" in sik.iso-name=*) ISO_STEM="${a#sik.iso-name=}" ;; esac
	done
	set +f
fi
case "$ISO_STEM" in
"" | . | .. | */* | *[!A-Za-z0-9._,+:=@%~-]*) ISO_STEM="" ;;
esac
ISO_EXT=""
[ -n "$ISO_STEM" ] && [ -d "$MEDIUM/boot/extensions/$ISO_STEM/$ARCH" ] &&
	ISO_EXT="$MEDIUM/boot/extensions/$ISO_STEM/$ARCH"

# 2. ExtensionImages (shared, then the ISO's own: one of the same file name
# replaces the shared one) and overlay.
set --
for f in "$MEDIUM/boot/extensions/$ARCH/"*.ExtensionImage "$MEDIUM/boot/customize/$ARCH/"*.ExtensionImage; do
	[ -n "$ISO_EXT" ] && [ -f "$ISO_EXT/${f##*/}" ] && continue
	[ -f "$f" ] && set -- "$@" "$f"
done
if [ -n "$ISO_EXT" ]; then
	for f in "$ISO_EXT/"*.ExtensionImage; do
		[ -f "$f" ] && set -- "$@" "$f"
	done
	log "ISO $ISO_STEM: its own extensions from boot/extensions/$ISO_STEM/$ARCH"
fi
[ -d "$MEDIUM/boot/customize/overlay" ] && set -- "$@" "$MEDIUM/boot/customize/overlay"
# The state (mounts of the images) lives inside the new root but not below
# its /run: the initramfs's /run is moved over NEWROOT/run at switch_root,
# which would hide mounts made there.
STATE="$NEWROOT/var/lib/sik/extensions"
[ "$NEWROOT" = "/" ] && STATE=/run/sik/extensions
if [ $# -gt 0 ]; then
	log "linking $# source(s) into $NEWROOT"
	# LINK_POLICY holds only the fixed flags --allow-directories and
	# --allow-unsigned-run: split into words on purpose. A key file the
	# trust store cannot parse is skipped by sik with a warning; whatever
	# link returns, the hook goes on (home, customization).
	# A sik without one of these flags has no such policy; it is not passed.
	flags=""
	if [ -n "$LINK_POLICY" ]; then
		link_help=$("$SIK" link --help 2>/dev/null)
		for f in $LINK_POLICY; do
			case "$link_help" in
			*"$f"*) flags="$flags $f" ;;
			*) log "policy: $f not passed (this sik has no such flag)" ;;
			esac
		done
		log "policy: boot/customize/policy.toml allows:$flags"
	fi
	load_dm_verity
	# sik link's report (one line per image: linked, and how it was
	# verified) goes to stderr with the hook's own lines: the console shows
	# stderr in every framework (dracut hooks' stdout only reaches the journal).
	# shellcheck disable=SC2086
	"$SIK" link "$@" --root "$NEWROOT" --trust "$MEDIUM/boot/keys" --state "$STATE" $flags >&2
	rc=$?
	case $rc in
	0) log "link done" ;;
	1) log "link done; some sources were refused (reasons above)" ;;
	*) log "link failed with status $rc" ;;
	esac
fi

# 2b. AppImages of Applications/: desktop entries, icons and MIME types in
# NEWROOT's /usr/local/share whose Exec runs each AppImage on the medium
# (nothing is copied; the medium's mount point under /run stays the same
# after switch_root). With keys in boot/keys only AppImages signed by one
# of them; --sync drops entries of AppImages no longer on the medium.
set --
for f in "$MEDIUM/Applications/"*.AppImage; do
	[ -f "$f" ] && set -- "$@" "$f"
done
apps=$#
[ -d "$MEDIUM/boot/keys" ] && set -- --trust "$MEDIUM/boot/keys" "$@"
if ! "$SIK" integrate --help >/dev/null 2>&1; then
	[ "$apps" -gt 0 ] && log "this sik has no integrate command; AppImages not integrated"
elif [ "$apps" -gt 0 ] || [ -d "$NEWROOT/usr/local/share/applications" ]; then
	log "integrating $apps AppImage(s) into $NEWROOT/usr/local/share"
	"$SIK" integrate --system --root "$NEWROOT" --sync "$@"
	case $? in
	0) log "AppImages integrated" ;;
	1) log "AppImages integrated; some were refused (reasons above)" ;;
	*) log "integrating AppImages failed" ;;
	esac
fi

# 3. Persistent home, mounted nosuid,nodev: a file on the medium or a
# partition labelled SIK-HOME on the medium's own disk.
HOME_OPTS=nosuid,nodev

# The mount options and source device of the mount point $1 (last match).
mount_info() {
	_info=""
	while read -r _dev _mnt _type _opts _rest; do
		[ "$_mnt" = "$1" ] && _info="$_dev $_opts"
	done < /proc/mounts
	echo "$_info"
}

# The whole disk a block device belongs to (sda for /dev/sda1, nvme0n1 for
# /dev/nvme0n1p2, loop0 for /dev/loop0p1 or /dev/loop0), from /sys/class/block.
disk_of() {
	_d=$(readlink -f "$1" 2>/dev/null)
	[ -n "$_d" ] || _d="$1"
	_n=${_d##*/}
	[ -e "/sys/class/block/$_n" ] || return 1
	if [ -e "/sys/class/block/$_n/partition" ]; then
		_p=$(readlink -f "/sys/class/block/$_n/..")
		_n=${_p##*/}
	fi
	echo "$_n"
}

mount_home() {
	mkdir -p "$NEWROOT/home" 2>/dev/null
	# Live initramfs images do not always load these before they need them.
	modprobe loop 2>/dev/null
	modprobe ext4 2>/dev/null
	set -- $(mount_info "$MEDIUM")
	medium_dev="${1:-}"
	if [ -f "$MEDIUM/home.img" ]; then
		# The medium may be mounted read-only (live-boot mounts findiso ro);
		# `test -w` says yes to root even there, so read the mount options.
		medium_ro=""
		case ",${2:-}," in *,ro,*) medium_ro=1 ;; esac
		if [ -n "$medium_ro" ]; then
			mount -o remount,rw "$MEDIUM" 2>/dev/null || log "home: cannot remount $MEDIUM read-write"
		fi
		home_done=""
		if mount -t ext4 -o "loop,$HOME_OPTS" "$MEDIUM/home.img" "$NEWROOT/home" 2>/dev/null; then
			log "home: $MEDIUM/home.img mounted on /home ($HOME_OPTS)"
			home_done=1
		else
			loopdev=$(losetup -f 2>/dev/null)
			if [ -n "$loopdev" ] && losetup "$loopdev" "$MEDIUM/home.img" 2>/dev/null; then
				if mount -t ext4 -o "$HOME_OPTS" "$loopdev" "$NEWROOT/home"; then
					log "home: $MEDIUM/home.img mounted on /home ($loopdev, $HOME_OPTS)"
					home_done=1
				else
					losetup -d "$loopdev" 2>/dev/null
				fi
			fi
			[ -n "$home_done" ] || log "home: cannot mount $MEDIUM/home.img"
		fi
		# Back to read-only as it was. While home.img is in use for writing
		# the kernel refuses (busy); then the medium stays read-write.
		if [ -n "$medium_ro" ]; then
			if mount -o remount,ro "$MEDIUM" 2>/dev/null; then
				log "medium $MEDIUM remounted read-only"
			else
				log "medium $MEDIUM stays read-write (home.img is open on it)"
			fi
		fi
		[ -n "$home_done" ] && return 0
	fi
	dev=""
	[ -e /dev/disk/by-label/SIK-HOME ] && dev=/dev/disk/by-label/SIK-HOME
	[ -z "$dev" ] && dev=$(findfs LABEL=SIK-HOME 2>/dev/null)
	[ -z "$dev" ] && dev=$(blkid -L SIK-HOME 2>/dev/null)
	[ -n "$dev" ] || return 0
	# Only a SIK-HOME partition on the disk the medium itself is on: any
	# other disk (a stick someone plugged in) could bring its own /home.
	home_disk=$(disk_of "$dev")
	medium_disk=""
	[ -n "$medium_dev" ] && medium_disk=$(disk_of "$medium_dev")
	if [ -z "$medium_disk" ] || [ "$home_disk" != "$medium_disk" ]; then
		log "home: $dev (SIK-HOME) ignored: not on the medium's disk (${medium_disk:-unknown})"
		return 0
	fi
	if mount -o "$HOME_OPTS" "$dev" "$NEWROOT/home"; then
		log "home: $dev (SIK-HOME) mounted on /home ($HOME_OPTS)"
	else
		log "home: cannot mount $dev (SIK-HOME)"
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
