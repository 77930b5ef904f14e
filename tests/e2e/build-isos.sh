#!/bin/sh
# Builds the two live ISOs of `cargo xtask e2e` from Debian's packages, with
# the distributions' real initramfs frameworks:
#   debian-live.iso  live-boot + initramfs-tools, Debian live layout
#   fedora-live.iso  dracut + dracut-live (dmsquash-live), Fedora layout
# Both share one root filesystem: debootstrap --variant=minbase bookworm with
# systemd, the cloud kernel's userland side and the e2e report unit from
# tests/e2e/root/.
#
# Usage: build-isos.sh WORKDIR OUTDIR ROOTFS_TARBALL
#   ROOTFS_TARBALL is the debootstrap result (made when missing).
# Needs root, debootstrap, mksquashfs, xorriso. Runs as root on the host;
# the chroot gets /proc, /sys and /dev bind mounts that are removed on exit.
set -eu
WORK=$1
OUT=$2
TARBALL=$3
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${SIK_E2E_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
KPKG=linux-image-cloud-amd64
# Modules the dracut initramfs needs to find an ISO file on a FAT or exFAT
# partition of a virtio/ATA disk and boot its squashfs root through overlayfs.
DRACUT_DRIVERS="vfat exfat nls_cp437 nls_iso8859-1 nls_utf8 loop iso9660 squashfs virtio_blk virtio_pci virtio_scsi sd_mod ahci ata_piix overlay ext4"

CH=$WORK/chroot
mkdir -p "$WORK" "$OUT"

umount_chroot() {
	for m in dev/pts dev proc sys; do
		mountpoint -q "$CH/$m" 2>/dev/null && umount -l "$CH/$m" || true
	done
}
trap umount_chroot EXIT INT TERM

# 1. The debootstrap root (cached as a tarball by the caller's key).
if [ ! -f "$TARBALL" ]; then
	rm -rf "$WORK/bootstrap"
	debootstrap --variant=minbase "$SUITE" "$WORK/bootstrap" "$MIRROR"
	tar -C "$WORK/bootstrap" -cf "$TARBALL.tmp" .
	mv "$TARBALL.tmp" "$TARBALL"
	rm -rf "$WORK/bootstrap"
fi
umount_chroot
rm -rf "$CH"
mkdir -p "$CH"
tar -C "$CH" -xf "$TARBALL"

mount -t proc proc "$CH/proc"
mount -t sysfs sysfs "$CH/sys"
mount --bind /dev "$CH/dev"
mount --bind /dev/pts "$CH/dev/pts"
printf '#!/bin/sh\nexit 101\n' > "$CH/usr/sbin/policy-rc.d"
chmod 755 "$CH/usr/sbin/policy-rc.d"
cat > "$CH/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
SRC
echo "sik-e2e" > "$CH/etc/hostname"
in_chroot() { chroot "$CH" env DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
APT="apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends"

# 2. Kernel, systemd, live-boot with initramfs-tools.
in_chroot apt-get -q update
in_chroot $APT install "$KPKG" systemd-sysv live-boot live-boot-initramfs-tools initramfs-tools zstd
KVER=$(ls "$CH/lib/modules" | head -n1)
echo "kernel $KVER"
# live-boot's findiso mounts the partition holding the ISO with the
# initramfs's own drivers: exfat (a module of Debian's kernel) must be in
# the initramfs for a medium whose DATA is exFAT.
echo exfat >> "$CH/etc/initramfs-tools/modules"
in_chroot update-initramfs -u -k "$KVER"

# The guest's own evidence: a unit that prints what the checks read to the
# serial console, then powers off. A user whose home lies on /home.
cp "$HERE/root/sik-e2e-report" "$CH/usr/local/sbin/sik-e2e-report"
chmod 755 "$CH/usr/local/sbin/sik-e2e-report"
cp "$HERE/root/sik-e2e.service" "$CH/etc/systemd/system/sik-e2e.service"
mkdir -p "$CH/etc/systemd/system/multi-user.target.wants"
ln -sf ../sik-e2e.service "$CH/etc/systemd/system/multi-user.target.wants/sik-e2e.service"
in_chroot systemctl set-default multi-user.target
# No getty: the serial console carries only the evidence.
in_chroot systemctl mask serial-getty@ttyS0.service getty@tty1.service console-getty.service
in_chroot useradd -m -d /home/e2e -u 1000 -s /bin/sh e2e 2>/dev/null || true
echo "root:sik" | in_chroot chpasswd

# 3. Debian live ISO tree.
D=$WORK/debian-iso
rm -rf "$D"; mkdir -p "$D/live" "$D/boot/grub" "$D/isolinux" "$D/.disk"
cp "$CH/boot/vmlinuz-$KVER" "$D/live/vmlinuz"
cp "$CH/boot/initrd.img-$KVER" "$D/live/initrd.img"
cp "$HERE/debian/grub.cfg" "$D/boot/grub/grub.cfg"
cp "$HERE/debian/live.cfg" "$D/isolinux/live.cfg"
echo "Debian GNU/Linux 12 \"Bookworm\" - sik e2e amd64 LIVE" > "$D/.disk/info"

# 4. The root filesystem (shared by both ISOs): without /boot and apt's
# caches. It keeps the kernel's modules (lib/modules/KVER with modules.dep),
# as a live root does: the sik boot hook loads dm-verity from there when the
# initramfs has none.
# /proc, /sys and /dev stay as empty directories: dracut's dmsquash-live
# takes a squashfs.img as the root tree itself only when it holds /proc.
R=$WORK/rootfs.squashfs
rm -f "$R"
in_chroot apt-get clean
mksquashfs "$CH" "$R" -noappend -comp zstd -quiet -no-progress -wildcards \
	-e 'boot/*' 'proc/*' 'sys/*' 'dev/*' 'var/lib/apt/lists/*' 'var/cache/apt/*' 'usr/share/doc/*' 'usr/share/man/*' 'usr/share/locale/*' usr/sbin/policy-rc.d
echo "root squashfs: $(stat -c %s "$R") bytes; lib/modules uncompressed: $(du -sb "$CH/usr/lib/modules" | cut -f1) bytes"
cp "$R" "$D/live/filesystem.squashfs"

# 5. dracut with dmsquash-live (replaces initramfs-tools in the chroot).
in_chroot $APT install dracut dracut-live
# Only the drivers this kernel has as modules (the cloud flavour has no
# ahci/ata_piix; built-in ones need no module): dracut-install fails the
# whole list on one unknown name.
DRIVERS=""
for m in $DRACUT_DRIVERS; do
	if in_chroot modinfo -k "$KVER" -F filename "$m" 2>/dev/null | grep -q '^/'; then DRIVERS="$DRIVERS $m"; fi
done
echo "dracut drivers:$DRIVERS"
in_chroot dracut --force --no-hostonly --add dmsquash-live --add-drivers "$DRIVERS" /tmp/initrd-dracut.img "$KVER"
F=$WORK/fedora-iso
rm -rf "$F"; mkdir -p "$F/LiveOS" "$F/images/pxeboot" "$F/EFI/BOOT" "$F/isolinux"
cp "$CH/boot/vmlinuz-$KVER" "$F/images/pxeboot/vmlinuz"
cp "$CH/tmp/initrd-dracut.img" "$F/images/pxeboot/initrd.img"
cp "$R" "$F/LiveOS/squashfs.img"
cp "$HERE/fedora/grub.cfg" "$F/EFI/BOOT/grub.cfg"
cp "$HERE/fedora/isolinux.cfg" "$F/isolinux/isolinux.cfg"

umount_chroot

# 6. The ISOs (no El Torito: GRUB boots them from the file through loopback).
xorriso -as mkisofs -quiet -R -J -V "SIK_E2E_DEBIAN" -o "$OUT/debian-live.iso.tmp" "$D"
mv "$OUT/debian-live.iso.tmp" "$OUT/debian-live.iso"
xorriso -as mkisofs -quiet -R -J -V "Fedora-SIK-E2E-Live" -o "$OUT/fedora-live.iso.tmp" "$F"
mv "$OUT/fedora-live.iso.tmp" "$OUT/fedora-live.iso"
echo "$KVER" > "$OUT/kernel-version"
ls -l "$OUT"
