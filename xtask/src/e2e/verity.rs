//! Scenario `verity`: `sik link` through dm-verity in a guest with the
//! Debian live ISO's own kernel (the test machines' kernel has no
//! device-mapper). No medium and no firmware: the ISO's kernel boots
//! directly with a small initramfs holding busybox, the static sik under
//! test, the loop and squashfs modules of the ISO's initrd, and a "new
//! root" whose `lib/modules/KVER` holds dm-verity and its dependencies
//! (dm-verity itself xz-compressed, reed_solomon gzip-compressed) for the
//! boot hook's `load_dm_verity` to load. The guest then
//!
//! 1. loads dm-verity with the boot hook's own function,
//! 2. links a signed verity image: sik must say "verified by dm-verity",
//!    a `sik-verity-vx` device over a loop device must be mounted,
//! 3. changes one data byte of the image file in place: reading the file in
//!    that block must fail with EIO and the kernel log name dm-verity,
//!    while a file in an untouched block still reads,
//! 4. unlinks (the dm device must go) and
//! 5. links a copy whose signed root hash was changed: refused before any
//!    device is made.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::{Ctx, Outcome};
use crate::Result;

/// The guest's init: each step prints a `GUEST:` line the checks read.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in loop squashfs; do insmod /mods/$m.ko || echo "GUEST: insmod $m failed"; done
log() { echo "GUEST: hook: $*"; }
NEWROOT=/newroot
. /hookfn.sh
load_dm_verity; echo "GUEST: load_dm_verity rc=$?"
mkdir -p /root/usr/lib /root/etc /root/run
echo ID=debian > /root/usr/lib/os-release; ln -s ../usr/lib/os-release /root/etc/os-release
mount -t tmpfs t /root/run
/sik link --root /root --trust /k.pub /img/vx.ExtensionImage; echo "GUEST: link rc=$?"
/sik status --root /root
echo "GUEST: dm name: $(cat /sys/block/dm-*/dm/name 2>&1)"
echo "GUEST: dm slaves: $(ls /sys/block/dm-*/slaves 2>&1)"
M=/root/run/sik/extensions/vx/mnt
grep " $M " /proc/mounts | sed 's/^/GUEST: mount: /'
echo "GUEST: hello before: $(cat $M/usr/share/verity/hello.txt 2>&1)"
printf 'Z' | dd of=/img/vx.ExtensionImage bs=1 seek=1048576 conv=notrunc 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
if cat $M/usr/bin/big > /dev/null 2>/tmp/err; then echo "GUEST: big read after tamper: OK"; else echo "GUEST: big read after tamper: $(cat /tmp/err)"; fi
echo "GUEST: hello after tamper: $(cat $M/usr/share/verity/hello.txt 2>&1)"
dmesg | grep -i 'device-mapper: verity' | tail -2 | sed 's/^/GUEST: dmesg: /'
/sik unlink --root /root vx; echo "GUEST: unlink rc=$?"
sleep 1
echo "GUEST: dm after unlink: $(ls /sys/block | grep dm- || echo none)"
/sik link --root /root --trust /k.pub /img/bad.ExtensionImage; echo "GUEST: bad rc=$?"
echo "GUEST: dm after bad: $(ls /sys/block | grep dm- || echo none)"
echo "GUEST: done"
poweroff -f
"#;

fn sh(script: &str) -> Result {
    let st = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("e2e verity: failed: {script}"))
    }
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

pub(super) fn run(ctx: &Ctx) -> Result<Vec<Outcome>> {
    let dir = ctx.out.join("verity");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let iso = ctx.isos.0.join("debian-live.iso");
    let (d, i, sik) = (q(&dir), q(&iso), q(&ctx.sik));
    // The ISO's kernel and initrd; the initrd's modules.
    sh(&format!(
        "cd {d}; xorriso -osirrox on -indev {i} -extract /live/vmlinuz vmlinuz -extract /live/initrd.img initrd.img >/dev/null 2>&1
         mkdir ird; cd ird; zstd -dc ../initrd.img | cpio -idm 2>/dev/null"
    ))?;
    // The guest's initramfs.
    let hookfn: String = {
        let b = sik_boot::generate::BOOT_SH;
        let start = b
            .find("load_dm_verity() {")
            .ok_or("boot.sh has no load_dm_verity")?;
        let end = start
            + b[start..]
                .find("\n}\n")
                .ok_or("load_dm_verity has no end")?
            + 3;
        b[start..end].to_string()
    };
    std::fs::write(dir.join("hookfn"), hookfn).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("init"), INIT).map_err(|e| e.to_string())?;
    sh(&format!(
        "cd {d}
         K=$(ls -d ird/usr/lib/modules/* ird/lib/modules/* 2>/dev/null | head -n1); KV=$(basename $K)
         mkdir -p gi/bin gi/mods gi/img gi/proc gi/sys gi/dev gi/tmp gi/root gi/newroot/lib/modules/$KV
         cp /bin/busybox gi/bin/busybox; cp {sik} gi/sik; cp init gi/init; chmod 755 gi/init; cp hookfn gi/hookfn.sh
         cp $K/kernel/drivers/block/loop.ko $K/kernel/fs/squashfs/squashfs.ko gi/mods/
         line=$(grep -E '^kernel/drivers/md/dm-verity.ko:' $K/modules.dep)
         out=''
         for m in ${{line%%:*}} ${{line#*:}}; do
           mkdir -p gi/newroot/lib/modules/$KV/$(dirname $m)
           case $m in
           */dm-verity.ko) xz -c $K/$m > gi/newroot/lib/modules/$KV/$m.xz; n=$m.xz ;;
           */reed_solomon.ko) gzip -c $K/$m > gi/newroot/lib/modules/$KV/$m.gz; n=$m.gz ;;
           *) cp $K/$m gi/newroot/lib/modules/$KV/$m; n=$m ;;
           esac
           out=\"$out $n\"
         done
         set -- $out; first=$1; shift
         echo \"$first: $*\" > gi/newroot/lib/modules/$KV/modules.dep
         mkdir -p src/usr/bin src/usr/share/verity
         head -c 3000000 /dev/urandom > src/usr/bin/big; echo hello > src/usr/share/verity/hello.txt
         {sik} key generate -o key --comment e2e@verity >/dev/null
         {sik} create extension src -o gi/img/vx.ExtensionImage -q --sign key
         cp key.pub gi/k.pub
         cp gi/img/vx.ExtensionImage gi/img/bad.ExtensionImage
         L=$(stat -c %s gi/img/bad.ExtensionImage)
         printf '\\001' | dd of=gi/img/bad.ExtensionImage bs=1 seek=$((L - 160 + 96 + 4)) conv=notrunc 2>/dev/null
         (cd gi && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../guest.cpio.gz)"
    ))?;
    let log = ctx.out.join("verity.log");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(ctx.timeout.as_secs().to_string())
        .args([
            "qemu-system-x86_64",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("guest.cpio.gz"))
        .args(["-append", "console=ttyS0 rdinit=/init panic=-1 quiet"])
        .output()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(&log, &text).map_err(|e| e.to_string())?;
    let failures = check(&text);
    Ok(vec![Outcome {
        scenario: "verity",
        what: "sik link through dm-verity (Debian kernel)".into(),
        firmware: "direct kernel",
        passed: failures.is_empty(),
        seconds,
        failures,
        log,
    }])
}

/// What the guest must have printed.
fn check(text: &str) -> Vec<String> {
    let has = |s: &str| text.contains(s);
    let mut f = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            f.push(what.to_string());
        }
    };
    want(
        has("GUEST: hook: dm-verity: loaded from /newroot/lib/modules/"),
        "the hook did not load dm-verity from the new root's lib/modules",
    );
    want(
        has("vx: verified by dm-verity"),
        "sik link did not say \"verified by dm-verity\"",
    );
    want(has("GUEST: link rc=0"), "sik link failed");
    want(
        has("verified: dm-verity"),
        "sik status does not show dm-verity",
    );
    want(
        has("GUEST: dm name: sik-verity-vx"),
        "no dm device sik-verity-vx",
    );
    want(
        has("GUEST: dm slaves: loop"),
        "the dm device is not over a loop device",
    );
    want(
        text.lines()
            .any(|l| l.starts_with("GUEST: mount: /dev/dm-") && l.contains(" squashfs ro")),
        "the image is not mounted from the dm device",
    );
    want(
        has("GUEST: hello before: hello"),
        "a file did not read through the link",
    );
    want(
        text.lines().any(|l| {
            l.starts_with("GUEST: big read after tamper:") && l.contains("Input/output error")
        }),
        "reading a changed block did not fail with EIO",
    );
    want(
        has("GUEST: hello after tamper: hello"),
        "a file in an untouched block no longer reads",
    );
    want(
        text.lines()
            .any(|l| l.starts_with("GUEST: dmesg:") && l.contains("corrupted")),
        "the kernel log does not name dm-verity",
    );
    want(has("GUEST: unlink rc=0"), "sik unlink failed");
    want(
        has("GUEST: dm after unlink: none"),
        "the dm device outlived unlink",
    );
    want(
        has("GUEST: bad rc=1") && has("signature invalid"),
        "a changed root hash was not refused",
    );
    want(
        has("GUEST: dm after bad: none"),
        "a dm device was made for a refused image",
    );
    want(has("GUEST: done"), "the guest did not finish");
    f
}
