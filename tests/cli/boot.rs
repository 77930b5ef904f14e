//! `sik boot`: detection of live ISOs built here with xorriso in each
//! family's real layout, grub.cfg and initrd generation, and installation
//! onto a disk image (as an ordinary user) that GRUB boots to its menu in
//! QEMU with SeaBIOS and with OVMF.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::Value;

/// Build an ISO from (path, contents) pairs with xorriso (Rock Ridge + Joliet).
fn make_iso(t: &TestDir, name: &str, label: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = t.join(format!("tree-{name}"));
    for (p, c) in files {
        let f = tree.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, c).unwrap();
    }
    std::fs::create_dir_all(&tree).unwrap();
    let iso = t.join(format!("{name}.iso"));
    run_ok(&mut mkisofs(&tree, &iso, label));
    iso
}

const KERNEL: &str = "fake kernel\n";
const INITRD: &str = "fake initrd\n";

#[allow(clippy::vec_init_then_push)]
fn family_isos(t: &TestDir) -> Vec<(PathBuf, &'static str)> {
    let mut v = Vec::new();
    v.push((
        make_iso(t, "ubuntu-24.04.1-desktop-amd64", "Ubuntu 24.04.1 LTS amd64", &[
            ("/casper/vmlinuz", KERNEL),
            ("/casper/initrd", INITRD),
            ("/casper/minimal.squashfs", "sq"),
            ("/.disk/info", "Ubuntu 24.04.1 LTS \"Noble Numbat\" - Release amd64 (20240827.1)"),
            (
                "/boot/grub/loopback.cfg",
                "menuentry \"Try or Install Ubuntu\" {\n\tset gfxpayload=keep\n\tlinux\t/casper/vmlinuz  iso-scan/filename=${iso_path} --- quiet splash\n\tinitrd\t/casper/initrd\n}\nmenuentry \"Ubuntu (safe graphics)\" {\n\tset gfxpayload=keep\n\tlinux\t/casper/vmlinuz  nomodeset  iso-scan/filename=${iso_path} --- quiet splash\n\tinitrd\t/casper/initrd\n}\n",
            ),
        ]),
        "casper",
    ));
    v.push((
        make_iso(t, "debian-live-12.7.0-amd64-xfce", "d-live 12.7.0 xf amd64", &[
            ("/live/vmlinuz-6.1.0-25-amd64", KERNEL),
            ("/live/initrd.img-6.1.0-25-amd64", INITRD),
            ("/live/filesystem.squashfs", "sq"),
            ("/.disk/info", "Debian GNU/Linux 12.7.0"),
            (
                "/boot/grub/grub.cfg",
                "source /boot/grub/config.cfg\nmenuentry \"Live system (amd64)\" --hotkey=l {\n\tlinux\t/live/vmlinuz-6.1.0-25-amd64 boot=live components quiet splash findiso=${iso_path}\n\tinitrd\t/live/initrd.img-6.1.0-25-amd64\n}\n",
            ),
            (
                "/isolinux/live.cfg",
                "label live-amd64\n\tmenu label ^Live system (amd64)\n\tmenu default\n\tlinux /live/vmlinuz-6.1.0-25-amd64\n\tinitrd /live/initrd.img-6.1.0-25-amd64\n\tappend boot=live components quiet splash findiso=${iso_path}\n",
            ),
        ]),
        "live-boot",
    ));
    v.push((
        make_iso(t, "Fedora-Workstation-Live-x86_64-41-1.4", "Fedora-WS-Live-41-1-4", &[
            ("/LiveOS/squashfs.img", "sq"),
            ("/images/pxeboot/vmlinuz", KERNEL),
            ("/images/pxeboot/initrd.img", INITRD),
            (
                "/EFI/BOOT/grub.cfg",
                "set default=\"1\"\nfunction load_video {\n  insmod all_video\n}\nmenuentry 'Start Fedora-Workstation-Live 41' --class fedora --class gnu-linux --class gnu --class os {\n\tlinux /images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-41-1-4  rd.live.image quiet rhgb\n\tinitrd /images/pxeboot/initrd.img\n}\nmenuentry 'Test this media & start Fedora-Workstation-Live 41' --class fedora --class gnu-linux --class gnu --class os {\n\tlinux /images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-41-1-4  rd.live.image rd.live.check quiet\n\tinitrd /images/pxeboot/initrd.img\n}\n",
            ),
        ]),
        "dracut-fedora",
    ));
    v.push((
        make_iso(t, "Fedora-Workstation-Live-42-1.1.x86_64", "Fedora-WS-Live-42-1-1", &[
            ("/LiveOS/squashfs.img", "sq"),
            ("/boot/x86_64/loader/linux", KERNEL),
            ("/boot/x86_64/loader/initrd", INITRD),
            (
                "/boot/grub2/grub.cfg",
                "set timeout=10\nmenuentry \"Fedora-Workstation-Live-42\" --class fedora --class gnu-linux --class gnu --class os {\n    linux ($root)/boot/x86_64/loader/linux quiet rhgb root=live:CDLABEL=Fedora-WS-Live-42-1-1 rd.live.image\n    initrd ($root)/boot/x86_64/loader/initrd\n}\n",
            ),
        ]),
        "dracut-loader",
    ));
    v.push((
        make_iso(t, "CentOS-7-x86_64-LiveGNOME-1804", "CentOS-7-x86_64-LiveGNOME-1804", &[
            ("/LiveOS/squashfs.img", "sq"),
            ("/isolinux/vmlinuz0", KERNEL),
            ("/isolinux/initrd0.img", INITRD),
            (
                "/isolinux/isolinux.cfg",
                "default vesamenu.c32\ntimeout 100\nlabel linux0\n  menu label ^Start CentOS-7-x86_64-LiveGNOME-1804\n  kernel vmlinuz0\n  append initrd=initrd0.img root=live:CDLABEL=CentOS-7-x86_64-LiveGNOME-1804 rootfstype=auto ro rd.live.image quiet  rhgb rd.luks=0 rd.md=0 rd.dm=0\n  menu default\nlabel check0\n  menu label Test this ^media & start CentOS\n  kernel vmlinuz0\n  append initrd=initrd0.img root=live:CDLABEL=CentOS-7-x86_64-LiveGNOME-1804 rootfstype=auto ro rd.live.image quiet  rhgb rd.luks=0 rd.md=0 rd.dm=0 rd.live.check\n",
            ),
        ]),
        "dracut-centos",
    ));
    v.push((
        make_iso(t, "archlinux-2024.11.01-x86_64", "ARCH_202411", &[
            ("/arch/boot/x86_64/vmlinuz-linux", KERNEL),
            ("/arch/boot/x86_64/initramfs-linux.img", INITRD),
            ("/arch/boot/intel-ucode.img", "ucode"),
            ("/arch/boot/amd-ucode.img", "ucode"),
            ("/arch/x86_64/airootfs.sfs", "sq"),
            (
                "/loader/entries/01-archiso-x86_64-linux.conf",
                "title    Arch Linux install medium (x86_64, UEFI)\nsort-key 01\nlinux    /arch/boot/x86_64/vmlinuz-linux\ninitrd   /arch/boot/intel-ucode.img\ninitrd   /arch/boot/amd-ucode.img\ninitrd   /arch/boot/x86_64/initramfs-linux.img\noptions  archisobasedir=arch archisosearchuuid=2024-11-01-09-53-18-00\n",
            ),
        ]),
        "archiso",
    ));
    v.push((
        make_iso(t, "openSUSE-Leap-42.3-KDE-Live-x86_64", "openSUSE-Leap-42.3-KDE-Live", &[
            ("/config.isoclient", "IMAGE='/dev/ram1;openSUSE-Leap-42.3-KDE-Live.x86_64;1.42.3'"),
            ("/boot/x86_64/loader/linux", KERNEL),
            ("/boot/x86_64/loader/initrd", INITRD),
            (
                "/boot/grub2/grub.cfg",
                "menuentry 'openSUSE-Leap-42.3-KDE-Live' --class opensuse --class os {\n    set gfxpayload=keep\n    echo Loading kernel...\n    $linux ($root)/boot/x86_64/loader/linux ramdisk_size=512000 ramdisk_blocksize=4096 splash=silent quiet showopts\n    echo Loading initrd...\n    $initrd ($root)/boot/x86_64/loader/initrd\n}\n",
            ),
        ]),
        "kiwi",
    ));
    v.push((
        make_iso(t, "Mageia-8-Live-Xfce-x86_64", "Mageia-8-Live-Xfce-x86_64", &[
            ("/loopbacks/distrib-lzma.sqfs", "sq"),
            ("/isolinux/x86_64/vmlinuz", KERNEL),
            ("/isolinux/x86_64/all.rdz", INITRD),
            (
                "/isolinux/isolinux.cfg",
                "default vesamenu.c32\nlabel live\n  menu label ^Boot Mageia 8\n  kernel x86_64/vmlinuz\n  append initrd=x86_64/all.rdz root=mgalive:LABEL=Mageia-8-Live-Xfce-x86_64 splash quiet noiswmd audit=0 rd.luks=0 rd.lvm=0 rd.md=0 rd.dm=0 vga=788\n",
            ),
        ]),
        "mageia",
    ));
    v.push((
        make_iso(t, "grml64-full_2024.02", "grml64-full 2024.02", &[
            ("/boot/grml64full/vmlinuz", KERNEL),
            ("/boot/grml64full/initrd.img", INITRD),
            ("/grml64-full/grml64-full.squashfs", "sq"),
            (
                "/boot/grub/loopback.cfg",
                "menuentry \"grml64-full\" {\n  linux /boot/grml64full/vmlinuz apm=power-off boot=live live-media-path=/live/grml64-full/ bootid=grml64full202402 findiso=${iso_path}\n  initrd /boot/grml64full/initrd.img\n}\n",
            ),
        ]),
        "generic",
    ));
    v
}

fn detect_json(isos: &[&Path]) -> (Option<i32>, Value) {
    let out = run(sik().args(["boot", "detect", "--json"]).args(isos));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), doc)
}

pub(crate) fn check_schema(schema_file: &str, doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../formats/schema")
        .join(schema_file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:?}");
}

fn args_of(entry: &Value) -> Vec<String> {
    entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn detect_recognises_every_family_layout() {
    if !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let isos = family_isos(&t);
    let paths: Vec<&Path> = isos.iter().map(|(p, _)| p.as_path()).collect();
    let (code, doc) = detect_json(&paths);
    assert_eq!(code, Some(0), "{doc:#}");
    check_schema("detect.json", &doc);
    let entries = doc["isos"].as_array().unwrap();
    for ((_, fam), e) in isos.iter().zip(entries) {
        assert_eq!(e["status"], "detected", "{e:#}");
        assert_eq!(e["family"], *fam, "{e:#}");
    }
    let by = |fam: &str| entries.iter().find(|e| e["family"] == fam).unwrap().clone();

    let u = by("casper");
    assert_eq!(u["label"], "Ubuntu 24.04.1 LTS amd64");
    assert_eq!(u["kernel"], "/casper/vmlinuz");
    assert_eq!(u["initrds"], serde_json::json!(["/casper/initrd"]));
    assert_eq!(
        args_of(&u),
        [
            "boot=casper",
            "iso-scan/filename=${iso_path}",
            "quiet",
            "splash"
        ]
    );
    assert_eq!(u["config"], "/boot/grub/loopback.cfg");

    let d = by("live-boot");
    assert_eq!(d["kernel"], "/live/vmlinuz-6.1.0-25-amd64");
    assert_eq!(
        d["initrds"],
        serde_json::json!(["/live/initrd.img-6.1.0-25-amd64"])
    );
    assert_eq!(
        args_of(&d),
        [
            "boot=live",
            "components",
            "findiso=${iso_path}",
            "quiet",
            "splash"
        ]
    );

    let f = by("dracut-fedora");
    assert_eq!(f["kernel"], "/images/pxeboot/vmlinuz");
    assert_eq!(
        args_of(&f),
        [
            "root=live:CDLABEL=Fedora-WS-Live-41-1-4",
            "rd.live.image",
            "iso-scan/filename=${iso_path}",
            "quiet",
            "rhgb"
        ]
    );

    let n = by("dracut-loader");
    assert_eq!(n["kernel"], "/boot/x86_64/loader/linux");
    assert_eq!(
        n["initrds"],
        serde_json::json!(["/boot/x86_64/loader/initrd"])
    );
    assert!(args_of(&n).contains(&"root=live:CDLABEL=Fedora-WS-Live-42-1-1".to_string()));

    let c = by("dracut-centos");
    assert_eq!(c["kernel"], "/isolinux/vmlinuz0");
    assert_eq!(c["initrds"], serde_json::json!(["/isolinux/initrd0.img"]));
    let cargs = args_of(&c);
    assert!(
        cargs.contains(&"rd.luks=0".to_string()) && cargs.contains(&"rootfstype=auto".to_string()),
        "{cargs:?}"
    );
    assert!(!cargs.iter().any(|a| a.starts_with("initrd=")));

    let a = by("archiso");
    assert_eq!(
        a["initrds"],
        serde_json::json!([
            "/arch/boot/intel-ucode.img",
            "/arch/boot/amd-ucode.img",
            "/arch/boot/x86_64/initramfs-linux.img"
        ])
    );
    let aargs = args_of(&a);
    assert_eq!(
        aargs,
        [
            "img_dev=/dev/disk/by-uuid/${uuid}",
            "img_loop=${iso_path}",
            "init=/run/archiso/img_dev/boot/sik/init",
            "archisobasedir=arch"
        ]
    );

    let k = by("kiwi");
    assert_eq!(k["kernel"], "/boot/x86_64/loader/linux");
    assert!(args_of(&k).starts_with(&[
        "isofrom_device=/dev/disk/by-uuid/${uuid}".to_string(),
        "isofrom_system=${iso_path}".to_string(),
        "init=/isofrom/boot/sik/init".to_string()
    ]));
    assert!(args_of(&k).contains(&"showopts".to_string()));

    let m = by("mageia");
    assert_eq!(m["kernel"], "/isolinux/x86_64/vmlinuz");
    assert_eq!(
        m["initrds"],
        serde_json::json!(["/isolinux/x86_64/all.rdz"])
    );
    assert_eq!(
        args_of(&m)[0],
        "isofrom=/dev/disk/by-uuid/${uuid}:${iso_path}"
    );

    // No family file knows grml: its own loopback.cfg entry, whose
    // arguments already name the ISO file (findiso=).
    let g = by("generic");
    assert_eq!(g["use_loopback_cfg"], false);
    assert_eq!(g["config"], "/boot/grub/loopback.cfg");
    assert_eq!(g["kernel"], "/boot/grml64full/vmlinuz");
    assert_eq!(g["iso_access"], "argument");
    assert!(args_of(&g).contains(&"findiso=${iso_path}".to_string()));
    for fam in ["casper", "live-boot", "dracut-fedora", "archiso"] {
        assert_eq!(by(fam)["iso_access"], "argument", "{fam}");
    }

    // Plain text output names the family too.
    let out = run_ok(sik().args(["boot", "detect"]).arg(&isos[0].0));
    assert!(
        out.contains("casper") && out.contains("/casper/vmlinuz"),
        "{out}"
    );
}

#[test]
fn detect_skips_odd_inputs_with_a_reason() {
    if !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let no_kernel = make_iso(
        &t,
        "nokernel",
        "NOKERNEL",
        &[("/casper/filesystem.squashfs", "sq")],
    );
    let unknown = make_iso(&t, "unknown", "SOMETHING", &[("/README.TXT", "hello")]);
    let empty = t.write("empty.iso", b"");
    let good = make_iso(
        &t,
        "good",
        "GOOD",
        &[("/casper/vmlinuz", KERNEL), ("/casper/initrd", INITRD)],
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = t.write("truncated.iso", &bytes[..bytes.len().min(36 * 1024)]);
    let garbage = t.write(
        "garbage.iso",
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>(),
    );
    // A descriptor whose root directory points far beyond the end.
    let mut hostile = bytes.clone();
    hostile.truncate(20 * 2048);
    hostile[16 * 2048 + 156 + 2..16 * 2048 + 156 + 6]
        .copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let hostile = t.write("hostile.iso", &hostile);
    let missing = t.join("missing.iso");
    let list = [
        &no_kernel, &unknown, &empty, &truncated, &garbage, &hostile, &missing, &good,
    ];
    let paths: Vec<&Path> = list.iter().map(|p| p.as_path()).collect();
    let (code, doc) = detect_json(&paths);
    assert_eq!(code, Some(1), "skipped ISOs make exit status 1: {doc:#}");
    check_schema("detect.json", &doc);
    let e = doc["isos"].as_array().unwrap();
    let reason = |i: usize| e[i]["reason"].as_str().unwrap_or_default().to_string();
    for x in &e[..7] {
        assert_eq!(x["status"], "skipped", "{x:#}");
    }
    assert!(reason(0).contains("no kernel"), "{}", reason(0));
    assert!(reason(1).contains("unknown layout"), "{}", reason(1));
    assert!(reason(2).contains("not an ISO 9660 image"), "{}", reason(2));
    assert!(reason(3).contains("beyond the image end"), "{}", reason(3));
    assert!(reason(4).contains("not an ISO 9660 image"), "{}", reason(4));
    assert!(reason(5).contains("malformed"), "{}", reason(5));
    assert!(reason(6).contains("cannot open"), "{}", reason(6));
    assert_eq!(e[7]["status"], "detected");
    assert_eq!(doc["skipped"], 7);
    assert_eq!(doc["detected"], 1);
}

#[test]
fn detect_boots_unknown_isos_by_their_own_config() {
    if !require_tool("xorriso") || !require_tool("grub-script-check") {
        return;
    }
    let t = TestDir::new();
    // An own loopback.cfg whose arguments name the ISO file.
    let lb = make_iso(
        &t,
        "lb",
        "LB-LIVE",
        &[
            ("/k/vmlinuz", KERNEL),
            ("/k/initrd.gz", INITRD),
            (
                "/boot/grub/loopback.cfg",
                "menuentry \"Live\" {\n  linux /k/vmlinuz boot=live findiso=${iso_path} quiet\n  initrd /k/initrd.gz\n}\n",
            ),
        ],
    );
    // An own loopback.cfg whose kernel path is only known to GRUB at boot.
    let lbvar = make_iso(
        &t,
        "lbvar",
        "LBVAR",
        &[
            ("/k/vmlinuz", KERNEL),
            (
                "/boot/grub/loopback.cfg",
                "set kdir=/k\nmenuentry \"Live\" {\n  linux ${kdir}/vmlinuz quiet\n}\n",
            ),
        ],
    );
    // An own grub.cfg, a root found by label only: the ISO becomes a block device.
    let grub = make_iso(
        &t,
        "grub",
        "MYLIVE",
        &[
            ("/sysimg/boot/kernel", KERNEL),
            ("/sysimg/boot/initramfs", INITRD),
            ("/sysimg/squashfs.img", "sq"),
            (
                "/boot/grub/grub.cfg",
                "set timeout=5\nmenuentry 'My live' {\n  linux ($root)/sysimg/boot/kernel BOOT_IMAGE=/x root=live:CDLABEL=MYLIVE rd.live.image rd.live.dir=sysimg 'a;reboot' sik.iso=forged:/x.iso quiet\n  initrd ($root)/sysimg/boot/initramfs\n}\n",
            ),
        ],
    );
    // An own isolinux.cfg (relative names, initrd= list in append).
    let isolinux = make_iso(
        &t,
        "isolinux",
        "ISOLIVE",
        &[
            ("/isolinux/vmlinuz", KERNEL),
            ("/isolinux/initrd.gz", INITRD),
            ("/isolinux/extra.gz", INITRD),
            (
                "/isolinux/isolinux.cfg",
                "default live\nlabel live\n  kernel vmlinuz\n  append initrd=initrd.gz,extra.gz cdlabel=ISOLIVE quiet\n",
            ),
        ],
    );
    // A config naming no kernel that exists, and no config at all.
    let dangling = make_iso(
        &t,
        "dangling",
        "DANGLING",
        &[(
            "/boot/grub/grub.cfg",
            "menuentry x {\n  linux /nowhere/vmlinuz\n}\n",
        )],
    );
    let none = make_iso(&t, "none", "NONE", &[("/k/vmlinuz", KERNEL)]);
    let list = [&lb, &lbvar, &grub, &isolinux, &dangling, &none];
    let paths: Vec<&Path> = list.iter().map(|p| p.as_path()).collect();
    let (code, doc) = detect_json(&paths);
    assert_eq!(code, Some(1), "{doc:#}");
    check_schema("detect.json", &doc);
    let e = doc["isos"].as_array().unwrap();
    for x in &e[..4] {
        assert_eq!(x["status"], "detected", "{x:#}");
        assert_eq!(x["family"], "generic", "{x:#}");
    }

    assert_eq!(e[0]["config"], "/boot/grub/loopback.cfg");
    assert_eq!(e[0]["use_loopback_cfg"], false);
    assert_eq!(e[0]["kernel"], "/k/vmlinuz");
    assert_eq!(e[0]["initrds"], serde_json::json!(["/k/initrd.gz"]));
    assert_eq!(
        args_of(&e[0]),
        ["boot=live", "findiso=${iso_path}", "quiet"]
    );
    assert_eq!(e[0]["iso_access"], "argument");

    assert_eq!(e[1]["use_loopback_cfg"], true, "{:#}", e[1]);
    assert_eq!(e[1]["config"], "/boot/grub/loopback.cfg");

    assert_eq!(e[2]["config"], "/boot/grub/grub.cfg");
    assert_eq!(e[2]["kernel"], "/sysimg/boot/kernel");
    assert_eq!(
        e[2]["initrds"],
        serde_json::json!(["/sysimg/boot/initramfs"])
    );
    assert_eq!(
        args_of(&e[2]),
        [
            "sik.iso=${uuid}:${iso_path}",
            "root=live:CDLABEL=MYLIVE",
            "rd.live.image",
            "rd.live.dir=sysimg",
            "quiet"
        ]
    );
    assert_eq!(e[2]["iso_access"], "block-device");
    let dropped: Vec<&str> = e[2]["dropped_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        dropped,
        ["BOOT_IMAGE=/x", "a;reboot", "sik.iso=forged:/x.iso"]
    );

    assert_eq!(e[3]["config"], "/isolinux/isolinux.cfg");
    assert_eq!(e[3]["kernel"], "/isolinux/vmlinuz");
    assert_eq!(
        e[3]["initrds"],
        serde_json::json!(["/isolinux/initrd.gz", "/isolinux/extra.gz"])
    );
    assert_eq!(
        args_of(&e[3]),
        ["sik.iso=${uuid}:${iso_path}", "cdlabel=ISOLIVE", "quiet"]
    );

    assert_eq!(e[4]["status"], "skipped");
    let r4 = e[4]["reason"].as_str().unwrap();
    assert!(
        r4.contains("generic: no entry of its boot configs names a kernel")
            && r4.contains("/boot/grub/grub.cfg"),
        "{r4}"
    );
    assert_eq!(e[5]["status"], "skipped");
    let r5 = e[5]["reason"].as_str().unwrap();
    assert!(
        r5.contains("unknown layout") && r5.contains("no boot config of its own"),
        "{r5}"
    );

    // The plain output says where the entry came from.
    let out = run(sik().args(["boot", "detect"]).arg(&grub).arg(&isolinux));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("generic (from boot/grub/grub.cfg)")
            && text.contains("generic (from isolinux/isolinux.cfg)"),
        "{text}"
    );

    // The menu entries: arguments as detected, bare words only; grub.cfg checks.
    let medium = t.mkdir("medium");
    for iso in [&lb, &lbvar, &grub, &isolinux] {
        run_ok(sik().args(["boot", "add"]).arg(iso).arg(&medium));
    }
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(fake_sik(&t))
            .arg(&medium),
    );
    let cfg = std::fs::read_to_string(medium.join("boot/grub/grub.cfg")).unwrap();
    assert!(
        cfg.contains("linux (loop)/sysimg/boot/kernel sik.iso=${uuid}:${iso_path} root=live:CDLABEL=MYLIVE rd.live.image rd.live.dir=sysimg quiet sik.iso-name="),
        "{cfg}"
    );
    assert!(
        cfg.contains("initrd (loop)/sysimg/boot/initramfs /boot/sik/initrd.img\n"),
        "{cfg}"
    );
    // Its factory-state entry still needs our initrd to find the ISO (a
    // block device): it keeps it and tells the hook to apply nothing.
    assert!(
        cfg.contains("linux (loop)/sysimg/boot/kernel sik.iso=${uuid}:${iso_path} root=live:CDLABEL=MYLIVE rd.live.image rd.live.dir=sysimg quiet sik.factory\n"),
        "{cfg}"
    );
    assert!(cfg.contains("menuentry 'grub (generic)'"), "{cfg}");
    assert!(cfg.contains("configfile /boot/grub/loopback.cfg"), "{cfg}");
    assert!(!cfg.contains("reboot"), "{cfg}");
}

/// A small stand-in for the static sik binary (the initrd only carries it).
pub(crate) fn fake_sik(t: &TestDir) -> PathBuf {
    // A static x86_64 executable, as generate demands (busybox-static).
    let p = t.join("sik-static");
    std::fs::copy(which("busybox").expect("busybox-static"), &p).unwrap();
    p
}

/// (start byte, length in bytes, type) of MBR partition `i` of an image.
fn mbr_partition(img: &Path, i: usize) -> (u64, u64, u8) {
    let mut mbr = [0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(img).unwrap(), &mut mbr).unwrap();
    let e = &mbr[446 + 16 * i..462 + 16 * i];
    let lba = u32::from_le_bytes(e[8..12].try_into().unwrap());
    let n = u32::from_le_bytes(e[12..16].try_into().unwrap());
    (u64::from(lba) * 512, u64::from(n) * 512, e[4])
}

/// Every file and directory of the exFAT DATA partition of an image as
/// another implementation reads it: fsck.exfat (exfatprogs) must find the
/// filesystem clean, then exfat-fuse reads it through a read-only loop
/// device. Path -> contents; directories end with `/` and map to nothing.
/// Needs root (loop device); the medium itself is written without.
fn exfat_files(img: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let (start, len, ty) = mbr_partition(img, 0);
    assert_eq!(ty, 0x07, "DATA is not an exFAT partition");
    let dev = run_ok(
        cmd("losetup")
            .args(["-r", "-f", "--show", "-o", &start.to_string()])
            .args(["--sizelimit", &len.to_string()])
            .arg(img),
    )
    .trim()
    .to_string();
    let fsck = run(cmd("fsck.exfat").arg("-n").arg(&dev));
    let mnt = tempfile::tempdir().unwrap();
    let mounted = run(cmd("mount.exfat-fuse")
        .args(["-o", "ro"])
        .arg(&dev)
        .arg(mnt.path()));
    let mut files = std::collections::BTreeMap::new();
    if mounted.status.success() {
        for e in walkdir::WalkDir::new(mnt.path())
            .min_depth(1)
            .sort_by_file_name()
        {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(mnt.path())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().is_dir() {
                files.insert(format!("{rel}/"), Vec::new());
            } else {
                files.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
        let _ = cmd("umount").arg(mnt.path()).status();
    }
    let _ = cmd("losetup").arg("-d").arg(&dev).status();
    assert!(
        fsck.status.success(),
        "fsck.exfat: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert!(
        mounted.status.success(),
        "exfat-fuse: {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    files
}

/// The file list of a FAT partition at `offset` of an image (mtools).
fn fat_listing(img: &Path, offset: u64, dir: &str) -> String {
    run_ok(
        cmd("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-/", "-b", "-i"])
            .arg(format!("{}@@{offset}", img.display()))
            .arg(dir),
    )
}

/// The exFAT volume serial as GRUB and blkid print it, from the boot sector.
fn exfat_serial(img: &Path) -> String {
    let (start, _, _) = mbr_partition(img, 0);
    let data = std::fs::read(img).unwrap();
    let b = &data[start as usize..start as usize + 512];
    assert_eq!(&b[3..11], b"EXFAT   ");
    let s = u32::from_le_bytes(b[100..104].try_into().unwrap());
    format!("{:04X}-{:04X}", s >> 16, s & 0xFFFF)
}

fn require_exfat_tools() -> bool {
    ["mkfs.exfat", "fsck.exfat", "mount.exfat-fuse", "losetup"]
        .iter()
        .all(|t| require_tool(t))
}

#[test]
fn generate_writes_checked_grub_cfg_and_initrd_once() {
    if !require_tool("xorriso") || !require_tool("grub-script-check") || !require_tool("cpio") {
        return;
    }
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    for (iso, _) in family_isos(&t) {
        let name = iso.file_name().unwrap().to_owned();
        std::fs::create_dir_all(medium.join("boot/iso")).unwrap();
        std::fs::rename(&iso, medium.join("boot/iso").join(name)).unwrap();
    }
    t.write(
        "medium/boot/customize/initrd/etc/sik-extra.conf",
        "extra=1\n",
    );
    t.write("medium/boot/grub/grub.cfg", "# hand-written\n");
    let sikbin = fake_sik(&t);

    // Dry run writes nothing.
    let out = run_ok(
        sik()
            .args(["boot", "generate", "--dry-run", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    check_schema("generate.json", &doc);
    assert!(
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] != "written")
    );
    assert!(!medium.join("boot/sik/initrd.img").exists());

    let out = run_ok(
        sik()
            .args(["boot", "generate", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    check_schema("generate.json", &doc);
    assert_eq!(doc["script_checked"], true);
    let cfg_path = medium.join("boot/grub/grub.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    assert_eq!(
        std::fs::read_to_string(medium.join("boot/grub/grub.cfg.old")).unwrap(),
        "# hand-written\n"
    );
    run_ok(cmd("grub-script-check").arg(&cfg_path));
    // Nine ISOs, each with a factory-state entry too.
    assert_eq!(cfg.matches("menuentry ").count(), 18, "{cfg}");
    assert_eq!(cfg.matches(" (factory state)'").count(), 9, "{cfg}");
    assert!(
        cfg.contains("menuentry 'ubuntu-24.04.1-desktop-amd64 (casper)'"),
        "{cfg}"
    );
    // A test directory is not a filesystem root: found by file, with a warning.
    assert_eq!(doc["medium_uuid"], Value::Null);
    assert!(cfg.contains("search --no-floppy --file --set=root \"${iso_path}\""));
    assert!(
        doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("search --file")),
        "{doc:#}"
    );
    assert!(cfg.contains("loopback loop \"${iso_path}\""));
    // The ISO's entry names the ISO to the hook (its own extensions) and
    // loads our initrd; the factory-state entry does neither.
    let entry_of = |title: &str| {
        let at = cfg
            .find(&format!("menuentry '{title}'"))
            .unwrap_or_else(|| panic!("no entry {title}: {cfg}"));
        let body = &cfg[at..];
        body[..body.find("\n}\n").unwrap()].to_string()
    };
    let ubuntu = entry_of("ubuntu-24.04.1-desktop-amd64 (casper)");
    assert!(
        ubuntu.contains(
            "linux (loop)/casper/vmlinuz boot=casper iso-scan/filename=${iso_path} quiet splash sik.iso-name=ubuntu-24.04.1-desktop-amd64\n"
        ),
        "{ubuntu}"
    );
    assert!(
        ubuntu.ends_with("initrd (loop)/casper/initrd /boot/sik/initrd.img"),
        "{ubuntu}"
    );
    let factory = entry_of("ubuntu-24.04.1-desktop-amd64 (casper) (factory state)");
    assert!(
        factory.contains(
            "linux (loop)/casper/vmlinuz boot=casper iso-scan/filename=${iso_path} quiet splash\n"
        ),
        "{factory}"
    );
    assert!(
        factory.ends_with("initrd (loop)/casper/initrd"),
        "{factory}"
    );
    assert!(cfg.contains(
        "initrd (loop)/arch/boot/intel-ucode.img (loop)/arch/boot/amd-ucode.img (loop)/arch/boot/x86_64/initramfs-linux.img /boot/sik/initrd.img\n"
    ));
    assert!(
        cfg.contains(
            "img_loop=${iso_path} init=/run/archiso/img_dev/boot/sik/init archisobasedir=arch sik.iso-name="
        ),
        "archiso runs through init="
    );
    assert!(
        cfg.contains("linux (loop)/boot/grml64full/vmlinuz apm=power-off boot=live"),
        "generic: the ISO's own loopback.cfg entry: {cfg}"
    );
    // The factory state of an init= family: the system's own init, no
    // initrd of ours.
    let arch_factory = cfg
        .split("\nmenuentry ")
        .find(|e| e.contains("archiso) (factory state)'"))
        .unwrap_or_else(|| panic!("no archiso factory entry: {cfg}"));
    assert!(!arch_factory.contains("init="), "{arch_factory}");
    assert!(!arch_factory.contains("sik"), "{arch_factory}");
    assert!(cfg.contains("terminal_output serial console"));
    for m in [
        "part_msdos",
        "fat",
        "iso9660",
        "loopback",
        "search_fs_file",
        "probe",
    ] {
        assert!(cfg.contains(&format!("insmod {m}\n")), "{m}");
    }

    // The initrd: newc cpio (gzip) with our program and each framework's hook.
    let initrd = medium.join("boot/sik/initrd.img");
    let listing = sh(
        t.path(),
        &format!("gzip -dc '{}' | cpio -t --quiet", initrd.display()),
    );
    let names: Vec<&str> = listing.lines().collect();
    for want in [
        "sik/sik",
        "sik/boot.sh",
        "usr/lib/dracut/hooks/pre-pivot/90-sik.sh",
        "lib/dracut/hooks/pre-pivot/90-sik.sh",
        "conf/conf.d/zz-sik.conf",
        "sik/initramfs-tools-hook",
        "sik/iso-device.sh",
        "usr/lib/dracut/hooks/initqueue/settled/05-sik-iso-device.sh",
        "lib/dracut/hooks/initqueue/settled/05-sik-iso-device.sh",
        "etc/sik-extra.conf",
    ] {
        assert!(
            names.contains(&want),
            "{want} missing from initrd: {names:?}"
        );
    }
    // No directory entries for paths a base initramfs may have as symlinks.
    for bad in ["lib", "usr", "usr/lib", "bin", "sbin", "conf"] {
        assert!(
            !names.contains(&bad),
            "{bad} would replace the base initramfs's own: {names:?}"
        );
    }
    let x = t.mkdir("x");
    sh(
        &x,
        &format!("gzip -dc '{}' | cpio -id --quiet", initrd.display()),
    );
    let hook = std::fs::read_to_string(x.join("usr/lib/dracut/hooks/pre-pivot/90-sik.sh")).unwrap();
    assert!(hook.contains("/sik/boot.sh"));
    let boot = std::fs::read_to_string(x.join("sik/boot.sh")).unwrap();
    for w in [
        "/run/initramfs/isoscan",
        "/isodevice",
        "/run/live/findiso",
        "link",
        "--trust",
        "boot/keys",
        "home.img",
        "SIK-HOME",
        "customize/init",
    ] {
        assert!(boot.contains(w), "boot.sh lacks {w}");
    }
    if have_tool("busybox") {
        run_ok(cmd("busybox").args(["sh", "-n"]).arg(x.join("sik/boot.sh")));
    }
    run_ok(cmd("sh").arg("-n").arg(x.join("sik/boot.sh")));
    run_ok(cmd("sh").arg("-n").arg(x.join("conf/conf.d/zz-sik.conf")));
    let conf = std::fs::read_to_string(x.join("conf/conf.d/zz-sik.conf")).unwrap();
    assert!(conf.contains("sik_phase='init-bottom'"), "{conf}");

    // Second run: nothing rewritten, bytes and mtimes unchanged.
    let files = [
        "boot/grub/grub.cfg",
        "boot/grub/grub.cfg.old",
        "boot/sik/initrd.img",
        "boot/sik/init",
        "boot/sik/boot.sh",
        "boot/sik/sik",
    ];
    let before: Vec<(Vec<u8>, std::time::SystemTime)> = files
        .iter()
        .map(|f| {
            (
                std::fs::read(medium.join(f)).unwrap(),
                std::fs::metadata(medium.join(f))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
        })
        .collect();
    let out = run_ok(
        sik()
            .args(["boot", "generate", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(
        doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{doc:#}"
    );
    for (f, (bytes, mtime)) in files.iter().zip(before) {
        assert_eq!(std::fs::read(medium.join(f)).unwrap(), bytes, "{f} changed");
        assert_eq!(
            std::fs::metadata(medium.join(f))
                .unwrap()
                .modified()
                .unwrap(),
            mtime,
            "{f} rewritten"
        );
    }
}

/// Boot a disk image in QEMU (TCG) and wait until the serial console shows `want`.
fn qemu_menu(disk: &Path, ovmf: bool, want: &str, log: &Path) -> Result<Duration, String> {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-machine",
        "accel=tcg",
        "-m",
        "256",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", log.display()))
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=ide,snapshot=on",
        disk.display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if ovmf {
        c.arg("-bios").arg("/usr/share/ovmf/OVMF.fd");
    }
    let start = Instant::now();
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let result = loop {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        if text.contains(want) {
            break Ok(start.elapsed());
        }
        if let Ok(Some(st)) = child.try_wait() {
            break Err(format!(
                "qemu exited ({st}) before the menu; serial log:\n{text}"
            ));
        }
        if start.elapsed() > Duration::from_secs(120) {
            break Err(format!("no GRUB menu within 120 s; serial log:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[test]
fn install_image_as_user_boots_grub_menu_with_seabios_and_ovmf() {
    for tool in [
        "xorriso",
        "mformat",
        "grub-mkimage",
        "qemu-system-x86_64",
        "setpriv",
    ] {
        if !require_tool(tool) {
            return;
        }
    }
    if !require_root() || !require_exfat_tools() {
        return;
    }
    if !Path::new("/usr/share/ovmf/OVMF.fd").is_file()
        && !skip("needs /usr/share/ovmf/OVMF.fd (ovmf)")
    {
        return;
    }
    let t = TestDir::new();
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let sikbin = fake_sik(&t);
    let iso = make_iso(
        &t,
        "ubuntu-24.04.1-desktop-amd64",
        "Ubuntu 24.04.1 LTS amd64",
        &[("/casper/vmlinuz", KERNEL), ("/casper/initrd", INITRD)],
    );
    let disk = t.join("disk.img");
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        let mut c = cmd("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(sik_bin())
            .args(args);
        c
    };
    // install, add and generate as an ordinary user: no root, no mounting.
    let out = run_ok(&mut as_nobody(&[
        "boot".as_ref(),
        "install".as_ref(),
        "--json".as_ref(),
        "--image".as_ref(),
        disk.as_os_str(),
        "--size".as_ref(),
        "192M".as_ref(),
        "--sik-binary".as_ref(),
        sikbin.as_os_str(),
    ]));
    let doc: Value = serde_json::from_str(&out).unwrap();
    check_schema("install.json", &doc);
    assert_eq!(doc["size"], 192 << 20);
    assert_eq!(doc["data_fs"], "exfat");
    let md = std::fs::metadata(&disk).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&md),
        65534,
        "the image was written by the ordinary user"
    );
    run_ok(&mut as_nobody(&[
        "boot".as_ref(),
        "add".as_ref(),
        iso.as_os_str(),
        disk.as_os_str(),
    ]));
    let out = run_ok(&mut as_nobody(&[
        "boot".as_ref(),
        "generate".as_ref(),
        disk.as_os_str(),
        "--sik-binary".as_ref(),
        sikbin.as_os_str(),
    ]));
    assert!(out.contains("written boot/grub/grub.cfg"), "{out}");
    // Arbitrary files and trees with --to (keys, overlay, customize/init).
    t.write("overlay/etc/motd", "hello\n");
    t.write("overlay/usr/share/sik/note", "note\n");
    t.write("signer.pub", "ssh-ed25519 AAAA test\n");
    sh(t.path(), "chmod -R a+rX overlay signer.pub");
    let overlay = t.join("overlay");
    let key = t.join("signer.pub");
    run_ok(&mut as_nobody(&[
        "boot".as_ref(),
        "add".as_ref(),
        overlay.as_os_str(),
        disk.as_os_str(),
        "--to".as_ref(),
        "boot/customize/overlay".as_ref(),
    ]));
    run_ok(&mut as_nobody(&[
        "boot".as_ref(),
        "add".as_ref(),
        key.as_os_str(),
        disk.as_os_str(),
        "--to".as_ref(),
        "boot/keys/".as_ref(),
    ]));
    let out = run(&mut as_nobody(&[
        "boot".as_ref(),
        "add".as_ref(),
        key.as_os_str(),
        disk.as_os_str(),
        "--to".as_ref(),
        "../x".as_ref(),
    ]));
    assert_fails(&out, 2, &["not allowed"]);
    // DATA (exFAT) as exfat-fuse reads it, after fsck.exfat found it clean.
    let files = exfat_files(&disk);
    for p in [
        "boot/customize/overlay/etc/motd",
        "boot/customize/overlay/usr/share/sik/note",
        "boot/keys/signer.pub",
        "boot/sik/initrd.img",
        "boot/grub/grub.cfg",
        "boot/extensions/x86_64/",
        "boot/keys/",
        "Applications/",
    ] {
        assert!(files.contains_key(p), "{p} missing: {:?}", files.keys());
    }
    assert_eq!(files["boot/customize/overlay/etc/motd"], b"hello\n");
    assert_eq!(files["boot/keys/signer.pub"], std::fs::read(&key).unwrap());
    let cfg = String::from_utf8(files["boot/grub/grub.cfg"].clone()).unwrap();
    assert!(
        cfg.contains("/boot/iso/ubuntu-24.04.1-desktop-amd64.iso"),
        "{cfg}"
    );
    assert!(cfg.contains("insmod exfat\n"), "{cfg}");
    assert_eq!(
        files["boot/iso/ubuntu-24.04.1-desktop-amd64.iso"],
        std::fs::read(&iso).unwrap()
    );
    assert!(
        !files.keys().any(|k| k.starts_with("EFI")),
        "EFI/ is on the ESP only"
    );
    // MBR: GRUB boot code, core.img's LBA, bootable exFAT DATA at 1 MiB, ESP last.
    let mbr = std::fs::read(&disk).unwrap()[..512].to_vec();
    assert_eq!(&mbr[510..], &[0x55, 0xAA]);
    assert_eq!(u64::from_le_bytes(mbr[0x5C..0x64].try_into().unwrap()), 1);
    assert_eq!((mbr[446], mbr[450]), (0x80, 0x07));
    assert_eq!(u32::from_le_bytes(mbr[454..458].try_into().unwrap()), 2048);
    let (esp, esp_len, esp_type) = mbr_partition(&disk, 1);
    assert_eq!((esp_type, esp_len), (0xEF, 64 << 20));
    assert_eq!(esp + esp_len, 192 << 20);
    assert_eq!(doc["esp_offset"], esp);
    let listing = fat_listing(&disk, esp, "::");
    assert!(listing.contains("::/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    assert!(!listing.contains("::/boot"), "{listing}");

    // The menu pins the medium by its exFAT volume serial, not by a file
    // path another disk could also have; GRUB's images search the same.
    let serial = exfat_serial(&disk);
    assert_eq!(doc["data_uuid"], serial.as_str());
    assert!(
        cfg.contains(&format!(
            "search --no-floppy --fs-uuid --set=root {serial}\n"
        )),
        "{serial}: {cfg}"
    );
    assert!(!cfg.contains("search --no-floppy --file"), "{cfg}");

    // After the menu's timeout the entry runs: the search by UUID found the
    // medium and loopback opened the ISO on it, and GRUB reads the kernel.
    let title = "ubuntu-24.04.1-desktop-amd64 (casper)";
    // (GRUB then fails on the stand-in kernel: "premature end of file".)
    let loading = "(loop)/casper/vmlinuz";
    for ovmf in [false, true] {
        let log = t.join(if ovmf { "ovmf.log" } else { "seabios.log" });
        let shown = qemu_menu(&disk, ovmf, loading, &log);
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        assert!(text.contains(title), "no menu entry {title:?}: {text}");
        match shown {
            Ok(d) => eprintln!(
                "GRUB menu with {}: {:.1} s",
                if ovmf { "OVMF" } else { "SeaBIOS" },
                d.as_secs_f64()
            ),
            Err(e) => panic!("{}: {e}", if ovmf { "OVMF" } else { "SeaBIOS" }),
        }
    }
}

#[test]
fn install_and_add_refuse_bad_input() {
    let t = TestDir::new();
    let out = run(sik()
        .args(["boot", "install", "--image"])
        .arg(t.join("d.img"))
        .args(["--size", "lots"]));
    assert_fails(&out, 2, &["boot install", "not a size"]);
    let out = run(sik()
        .args(["boot", "install", "--image"])
        .arg(t.join("d.img"))
        .args(["--size", "1M", "--sik-binary"])
        .arg(fake_sik(&t)));
    if have_tool("grub-mkimage") {
        assert_fails(&out, 2, &["too small"]);
    }
    let medium = t.mkdir("m");
    let txt = t.write("notes.txt", "hello");
    let out = run(sik().args(["boot", "add"]).arg(&txt).arg(&medium));
    assert_fails(&out, 2, &["boot add", "not an ISO"]);
    let out = run(sik().args(["boot", "install", "--device", "/dev/null-does-not-exist"]));
    assert_eq!(out.status.code(), Some(2));
}

/// A busybox-only root that plays a foreign initramfs: the secondary initrd
/// unpacked over it, the medium where the family's initramfs exposes it.
/// The test directory's `sik-recorder` script, when there is one, then
/// stands in for `sik/sik` (generate embeds only a static executable).
fn busybox_initramfs(
    t: &TestDir,
    medium: &Path,
    initrd: &Path,
    name: &str,
    medium_at: &str,
) -> PathBuf {
    let root = t.mkdir(name);
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(which("busybox").unwrap(), root.join("bin/busybox")).unwrap();
    for tool in run_ok(cmd(root.join("bin/busybox")).arg("--list")).lines() {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(tool));
    }
    sh(
        &root,
        &format!("gzip -dc '{}' | cpio -id --quiet", initrd.display()),
    );
    if t.join("sik-recorder").exists() {
        std::fs::copy(t.join("sik-recorder"), root.join("sik/sik")).unwrap();
    }
    let m = root.join(medium_at.trim_start_matches('/'));
    std::fs::create_dir_all(&m).unwrap();
    sh(
        t.path(),
        &format!("cp -a '{}/.' '{}/'", medium.display(), m.display()),
    );
    for d in ["dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    run_ok(
        cmd("mount")
            .arg("--rbind")
            .arg("/dev")
            .arg(root.join("dev")),
    );
    run_ok(
        cmd("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc")),
    );
    root
}

#[test]
fn hooks_run_in_busybox_initramfs_tools_and_dracut_roots() {
    if !require_root()
        || !require_tool("busybox")
        || !require_tool("cpio")
        || !require_tool("mkfs.ext4")
    {
        return;
    }
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    t.write(
        "medium/boot/extensions/x86_64/firmware.ExtensionImage",
        "sq",
    );
    t.write("medium/boot/customize/overlay/etc/motd", "hello\n");
    t.write("medium/boot/keys/signer.pub", "ssh-ed25519 AAAA test");
    t.write("medium/boot/customize/init", "#!/bin/sh\necho customized\n");
    t.write("medium/Applications/App.AppImage", "ai");
    // The stand-in for sik records how the hook called it.
    t.write(
        "medium/boot/customize/policy.toml",
        "allow_directories = true\nallow_unsigned_run = false\n",
    );
    let recorder = t.write(
        "sik-recorder",
        "#!/bin/sh\ncase \"$*\" in *--help*) echo '--allow-directories --allow-unsigned-run'; exit 0 ;; esac\necho \"$@\" > \"/sik-$1-args\"\n[ -e /link-fails ] && exit 2\nexit 0\n",
    );
    std::fs::set_permissions(
        &recorder,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    run_ok(
        cmd("mkfs.ext4")
            .args(["-q", "-F", "-L", "home"])
            .arg(medium.join("home.img"))
            .arg("8M"),
    );
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(fake_sik(&t))
            .arg(&medium),
    );
    let initrd = medium.join("boot/sik/initrd.img");

    // initramfs-tools (casper): /init sources conf.d, then runs ORDER of init-bottom.
    let root = busybox_initramfs(&t, &medium, &initrd, "itools", "/isodevice");
    t.write(
        "itools/scripts/init-bottom/ORDER",
        "/scripts/init-bottom/udev \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n",
    );
    std::fs::create_dir_all(root.join("root/etc/systemd/system")).unwrap();
    std::fs::create_dir_all(root.join("root/home")).unwrap();
    let out = run(cmd("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "rootmnt=/root; export rootmnt; for conf in /conf/conf.d/*; do [ -f \"$conf\" ] && . \"$conf\"; done; \
         . /conf/conf.d/zz-sik.conf; grep -c sik /scripts/init-bottom/ORDER; \
         /sik/initramfs-tools-hook; grep ' /root/home ' /proc/mounts >&2; umount /root/home",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "1",
        "ORDER gets our entry once, even when sourced twice"
    );
    let args = std::fs::read_to_string(root.join("sik-link-args")).unwrap();
    assert_eq!(
        args.trim(),
        "link /isodevice/boot/extensions/x86_64/firmware.ExtensionImage /isodevice/boot/customize/overlay --root /root --trust /isodevice/boot/keys --state /root/var/lib/sik/extensions --allow-directories"
    );
    // The AppImages of Applications/ go into the new root's menu, only
    // signed ones with boot/keys in force; entries of others are dropped.
    let args = std::fs::read_to_string(root.join("sik-integrate-args")).unwrap();
    assert_eq!(
        args.trim(),
        "integrate --system --root /root --sync --trust /isodevice/boot/keys /isodevice/Applications/App.AppImage"
    );
    // The home is mounted nosuid,nodev.
    let home_line = stderr
        .lines()
        .find(|l| l.contains(" /root/home "))
        .unwrap_or_else(|| panic!("home not mounted: {stderr}"));
    assert!(
        home_line.contains("nosuid") && home_line.contains("nodev"),
        "{home_line}"
    );
    assert!(
        stderr.contains("sik: boot medium at /isodevice"),
        "{stderr}"
    );
    assert!(
        stderr.contains("home: /isodevice/home.img mounted on /home"),
        "{stderr}"
    );
    let unit = std::fs::read_to_string(root.join("root/etc/systemd/system/sik-customize.service"))
        .unwrap();
    assert!(unit.contains("ExecStart=/bin/sh /etc/sik/customize-init"));
    assert_eq!(
        std::fs::read_link(
            root.join("root/etc/systemd/system/multi-user.target.wants/sik-customize.service")
        )
        .unwrap(),
        Path::new("../sik-customize.service")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("root/etc/sik/customize-init")).unwrap(),
        "#!/bin/sh\necho customized\n"
    );

    // dracut: pre-pivot hooks are sourced with NEWROOT set. Here link fails
    // (as a sik that could not use boot/keys would): the hook goes on.
    let root = busybox_initramfs(&t, &medium, &initrd, "dracut", "/run/initramfs/isoscan");
    std::fs::create_dir_all(root.join("sysroot/etc/systemd/system")).unwrap();
    std::fs::write(root.join("link-fails"), "").unwrap();
    let out = run(cmd("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "NEWROOT=/sysroot; export NEWROOT; for f in /usr/lib/dracut/hooks/pre-pivot/*.sh; do . \"$f\"; done; umount /sysroot/home",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let args = std::fs::read_to_string(root.join("sik-link-args")).unwrap();
    assert!(
        args.contains("--root /sysroot --trust /run/initramfs/isoscan/boot/keys"),
        "{args}"
    );
    assert!(stderr.contains("link failed with status 2"), "{stderr}");
    assert!(
        stderr.contains("home: /run/initramfs/isoscan/home.img mounted on /home"),
        "{stderr}"
    );
    assert!(
        root.join("sysroot/etc/systemd/system/sik-customize.service")
            .is_file()
    );

    // An initramfs that mounts the medium where no family file says:
    // found through /proc/mounts.
    let root = busybox_initramfs(&t, &medium, &initrd, "elsewhere", "/srv/copy");
    std::fs::create_dir_all(root.join("mnt/odd")).unwrap();
    std::fs::create_dir_all(root.join("sysroot")).unwrap();
    run_ok(
        cmd("mount")
            .arg("--bind")
            .arg(root.join("srv/copy"))
            .arg(root.join("mnt/odd")),
    );
    let out = run(cmd("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "NEWROOT=/sysroot; export NEWROOT; . /usr/lib/dracut/hooks/pre-pivot/90-sik.sh; umount /sysroot/home",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sik: boot medium at /mnt/odd,"), "{stderr}");

    // A partition labelled SIK-HOME on another disk (here a loop device;
    // the medium is on none) is not mounted as /home.
    if !have_tool("losetup") {
        return;
    }
    let foreign = t.join("foreign-home.img");
    run_ok(
        cmd("mkfs.ext4")
            .args(["-q", "-F", "-L", "SIK-HOME"])
            .arg(&foreign)
            .arg("8M"),
    );
    let loopdev = run_ok(cmd("losetup").args(["-f", "--show"]).arg(&foreign));
    let loopdev = loopdev.trim().to_string();
    let root = busybox_initramfs(&t, &medium, &initrd, "foreign", "/run/initramfs/isoscan");
    std::fs::remove_file(root.join("run/initramfs/isoscan/home.img")).unwrap();
    std::fs::create_dir_all(root.join("sysroot/home")).unwrap();
    let out = run(cmd("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "NEWROOT=/sysroot; export NEWROOT; . /usr/lib/dracut/hooks/pre-pivot/90-sik.sh; grep ' /sysroot/home ' /proc/mounts; true",
    ]));
    let _ = cmd("losetup").arg("-d").arg(&loopdev).status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(SIK-HOME) ignored: not on the medium's disk"),
        "{stderr}"
    );
    assert!(
        stdout.trim().is_empty(),
        "a foreign SIK-HOME was mounted: {stdout}"
    );
}

#[test]
fn install_device_refuses_mounted_and_installs_on_a_loop_device() {
    if !require_root()
        || !require_tool("losetup")
        || !require_tool("mkfs.exfat")
        || !require_tool("mformat")
        || !require_tool("grub-mkimage")
        || !require_tool("mkfs.ext4")
    {
        return;
    }
    let t = TestDir::new();
    let sikbin = fake_sik(&t);
    let img = t.join("dev.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(160 << 20)
        .unwrap();
    let dev = run_ok(cmd("losetup").args(["-f", "--show"]).arg(&img))
        .trim()
        .to_string();
    let detach = |d: &str| {
        let _ = cmd("losetup").arg("-d").arg(d).status();
    };
    // Without --yes and without a terminal: refused, nothing written.
    let out = run(sik()
        .args(["boot", "install", "--device", &dev, "--sik-binary"])
        .arg(&sikbin));
    assert_fails(&out, 2, &["without confirmation"]);
    let out = run(sik()
        .args(["boot", "install", "--device", &dev, "--yes", "--sik-binary"])
        .arg(&sikbin));
    let ok = out.status.success();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // A mounted device is refused.
    let mnt = t.mkdir("mnt");
    let img2 = t.join("ext4.img");
    std::fs::File::create(&img2)
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    run_ok(cmd("mkfs.ext4").args(["-q", "-F"]).arg(&img2));
    let dev2 = run_ok(cmd("losetup").args(["-f", "--show"]).arg(&img2))
        .trim()
        .to_string();
    run_ok(cmd("mount").arg(&dev2).arg(&mnt));
    let refused = run(sik()
        .args([
            "boot",
            "install",
            "--device",
            &dev2,
            "--yes",
            "--sik-binary",
        ])
        .arg(&sikbin));
    let _ = cmd("umount").arg(&mnt).status();
    detach(&dev2);
    detach(&dev);
    assert!(ok, "{stderr}");
    assert_fails(&refused, 2, &["in use"]);
    let (esp, _, _) = mbr_partition(&img, 1);
    let listing = fat_listing(&img, esp, "::");
    assert!(listing.contains("::/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    if require_exfat_tools() {
        assert!(exfat_files(&img).contains_key("boot/grub/grub.cfg"));
    }
}

/// Build an ISO with extra xorriso options (name sets) from a tree that may hold symlinks.
fn make_iso_opts(t: &TestDir, name: &str, opts: &[&str], setup: &str) -> PathBuf {
    let tree = t.mkdir(&format!("tree-{name}"));
    sh(&tree, setup);
    let iso = t.join(format!("{name}.iso"));
    run_ok(
        cmd("xorriso")
            .args(["-as", "mkisofs", "-quiet"])
            .args(opts)
            .args(["-V", "NAMES", "-o"])
            .arg(&iso)
            .arg(&tree),
    );
    iso
}

#[test]
fn detect_reads_rock_ridge_links_joliet_and_plain_names_and_medium_families() {
    if !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let casper = "mkdir -p casper boot/grub && echo k > casper/vmlinuz-6.8.0-41-generic && echo i > casper/initrd.img-6.8.0-41-generic";
    // Rock Ridge symbolic links to the versioned files.
    let rr = make_iso_opts(
        &t,
        "rr",
        &["-R"],
        &format!(
            "{casper} && ln -s vmlinuz-6.8.0-41-generic casper/vmlinuz && ln -s initrd.img-6.8.0-41-generic casper/initrd"
        ),
    );
    // A cycle of links and a directory linking to itself must not hang or crash.
    let cyc = make_iso_opts(
        &t,
        "cycle",
        &["-R"],
        "mkdir live && ln -s a live/b && ln -s b live/a && ln -s . live/self && ln -s /live/loop live/loop",
    );
    let joliet = make_iso_opts(&t, "joliet", &["-J"], casper);
    let plain = make_iso_opts(
        &t,
        "plain",
        &[],
        "mkdir -p casper && echo k > casper/vmlinuz && echo i > casper/initrd",
    );
    let (code, doc) = detect_json(&[&rr, &cyc, &joliet, &plain]);
    let e = doc["isos"].as_array().unwrap();
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(e[0]["family"], "casper", "{doc:#}");
    assert_eq!(e[0]["kernel"], "/casper/vmlinuz");
    assert_eq!(e[0]["initrds"], serde_json::json!(["/casper/initrd"]));
    assert_eq!(e[1]["status"], "skipped");
    assert!(
        e[1]["reason"]
            .as_str()
            .unwrap()
            .contains("live-boot: no kernel"),
        "{doc:#}"
    );
    assert_eq!(e[2]["family"], "casper", "Joliet names: {doc:#}");
    assert_eq!(e[2]["kernel"], "/casper/vmlinuz-6.8.0-41-generic");
    assert_eq!(e[3]["family"], "casper", "plain ISO 9660 names: {doc:#}");

    // A family file of the medium's boot/formats/ (here: --formats) adds a distribution.
    let slax = make_iso_opts(
        &t,
        "slax",
        &["-R"],
        "mkdir -p slax/boot && echo k > slax/boot/vmlinuz && echo i > slax/boot/initrfs.img && echo c > slax/01-core.sb",
    );
    let formats = t.mkdir("formats");
    t.write(
        "formats/slax.toml",
        r#"name = "slax"
description = "Slax (test family from a medium)"
[detect]
all = ["/slax/01-core.sb"]
[boot]
kernel = ["/slax/boot/vmlinuz"]
initrd = ["/slax/boot/initrfs.img"]
args = "from=${iso_path} load_ramdisk=1"
[initramfs]
framework = "slax"
medium = "/memory/data"
newroot = "/union"
[hook]
method = "none"
"#,
    );
    let (code, doc) = detect_json(&[&slax]);
    assert_eq!(code, Some(1), "unknown without the family file: {doc:#}");
    let out = run(sik()
        .args(["boot", "detect", "--json", "--formats"])
        .arg(&formats)
        .arg(&slax));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["isos"][0]["family"], "slax");
    assert_eq!(
        args_of(&doc["isos"][0]),
        ["from=${iso_path}", "load_ramdisk=1"]
    );
    // A broken family file is an input error naming the file.
    t.write("formats/broken.toml", "name = \"x\"\n[detect]\n");
    let out = run(sik()
        .args(["boot", "detect", "--formats"])
        .arg(&formats)
        .arg(&slax));
    assert_fails(&out, 2, &["broken.toml"]);
}

#[test]
fn detect_survives_thousands_of_mutated_isos() {
    if !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let isos = family_isos(&t);
    let families = sik_boot::family::builtin();
    // A small deterministic generator (xorshift), no extra dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut detected = 0;
    for (iso, _) in isos.iter().take(4) {
        let base = std::fs::read(iso).unwrap();
        // The interesting structures: descriptors, path tables, directories, configs.
        let hot = base.len().min(40 * 2048);
        for _ in 0..600 {
            let mut m = base.clone();
            for _ in 0..(1 + next() % 8) {
                let pos = 16 * 2048 + (next() as usize % (hot - 16 * 2048));
                m[pos] = match next() % 4 {
                    0 => 0,
                    1 => 0xFF,
                    _ => next() as u8,
                };
            }
            if next() % 10 == 0 {
                m.truncate(next() as usize % m.len());
            }
            let outcome = sik_boot::detect::detect_reader(std::io::Cursor::new(m), &families);
            if matches!(outcome, sik_boot::detect::Outcome::Detected(_)) {
                detected += 1;
            }
        }
    }
    assert!(
        detected > 0,
        "mutations that leave the layout intact are still detected"
    );
}

#[test]
fn add_and_generate_work_on_a_fat_image_without_partition_table() {
    if !require_tool("mformat") || !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let img = t.join("superfloppy.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run_ok(
        cmd("mformat")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .args(["-F", "::"]),
    );
    let iso = make_iso(
        &t,
        "debian-live",
        "d-live",
        &[("/live/vmlinuz", KERNEL), ("/live/initrd.img", INITRD)],
    );
    let out = run_ok(sik().args(["boot", "add"]).arg(&iso).arg(&img));
    assert!(out.contains("boot/iso/debian-live.iso"), "{out}");
    let sikbin = fake_sik(&t);
    let out = run_ok(
        sik()
            .args(["boot", "generate", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg(&img),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["isos"][0]["family"], "live-boot", "{doc:#}");
    let cfg = run_ok(
        cmd("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .arg("::/boot/grub/grub.cfg"),
    );
    assert!(
        cfg.contains("linux (loop)/live/vmlinuz boot=live components findiso=${iso_path}"),
        "{cfg}"
    );
}

/// The GRUB injection of issue 13: a kernel named so that grub.cfg would
/// close the menu entry, set `timeout=0` and `default=1` and open another.
const INJECT: &str = "vmlinuz; } ; set timeout=0 ; set default=1 ; menuentry x { echo";

#[test]
fn generate_skips_isos_whose_names_would_write_grub_commands() {
    if !require_tool("xorriso") || !require_tool("grub-script-check") {
        return;
    }
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    let iso_dir = medium.join("boot/iso");
    std::fs::create_dir_all(&iso_dir).unwrap();
    let put = |iso: PathBuf| {
        let name = iso.file_name().unwrap().to_owned();
        std::fs::rename(&iso, iso_dir.join(name)).unwrap();
    };
    // Kernel named by the ISO's own grub.cfg (Rock Ridge name, quoted there).
    put(make_iso(
        &t,
        "evil-kernel",
        "d-live",
        &[
            (&format!("/live/{INJECT}"), KERNEL),
            ("/live/initrd.img", INITRD),
            (
                "/boot/grub/grub.cfg",
                &format!(
                    "menuentry \"Live\" {{\n\tlinux \"/live/{INJECT}\" boot=live\n\tinitrd /live/initrd.img\n}}\n"
                ),
            ),
        ],
    ));
    // Kernel found through the family's `vmlinuz-*` candidate.
    put(make_iso(
        &t,
        "evil-glob",
        "casper",
        &[
            (
                "/casper/vmlinuz-1; } ; set default=1 ; menuentry y { echo",
                KERNEL,
            ),
            ("/casper/initrd", INITRD),
        ],
    ));
    // Initrd found through the family's `initrd-*` candidate.
    put(make_iso(
        &t,
        "evil-initrd",
        "casper",
        &[
            ("/casper/vmlinuz", KERNEL),
            ("/casper/initrd-1 ; set timeout=0", INITRD),
        ],
    ));
    // A volume label that reaches root=live:CDLABEL=.
    put(make_iso(
        &t,
        "evil-label",
        "x;set default=1",
        &[
            ("/LiveOS/squashfs.img", "sq"),
            ("/images/pxeboot/vmlinuz", KERNEL),
            ("/images/pxeboot/initrd.img", INITRD),
        ],
    ));
    // A distribution argument with GRUB syntax is dropped, the ISO kept.
    put(make_iso(
        &t,
        "good",
        "d-live",
        &[
            ("/live/vmlinuz", KERNEL),
            ("/live/initrd.img", INITRD),
            (
                "/boot/grub/grub.cfg",
                "menuentry \"Live\" {\n\tlinux /live/vmlinuz boot=live quiet \"x}; set default=1\" a$b\n\tinitrd /live/initrd.img\n}\n",
            ),
        ],
    ));
    let sikbin = fake_sik(&t);
    let out = run_ok(
        sik()
            .args(["boot", "generate", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    check_schema("generate.json", &doc);
    let status = |name: &str| -> (String, String) {
        let i = doc["isos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == format!("boot/iso/{name}.iso"))
            .unwrap_or_else(|| panic!("{name} missing: {doc:#}"));
        (
            i["status"].as_str().unwrap().to_string(),
            i["reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    for (name, why) in [
        ("evil-kernel", "kernel path"),
        ("evil-glob", "kernel path"),
        ("evil-initrd", "initrd path"),
        ("evil-label", "volume label"),
    ] {
        let (st, reason) = status(name);
        assert_eq!(st, "skipped", "{name}: {doc:#}");
        assert!(reason.contains(why), "{name}: {reason}");
    }
    assert_eq!(status("good").0, "detected", "{doc:#}");
    let good = doc["isos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "boot/iso/good.iso")
        .unwrap();
    assert!(
        good["dropped_args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "x}; set default=1"),
        "{good:#}"
    );
    let cfg_path = medium.join("boot/grub/grub.cfg");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    run_ok(cmd("grub-script-check").arg(&cfg_path));
    // good.iso's entry and its factory-state entry.
    assert_eq!(cfg.matches("menuentry ").count(), 2, "{cfg}");
    for bad in [
        "set timeout=0",
        "set default=1",
        "menuentry x",
        "menuentry y",
        "a$b",
    ] {
        assert!(!cfg.contains(bad), "{bad} reached grub.cfg:\n{cfg}");
    }
    assert!(cfg.contains("set default=0\n") && cfg.contains("set timeout=10\n"));
    // Plain text output names each skipped ISO with the reason.
    let out = run(sik()
        .args(["boot", "detect"])
        .arg(iso_dir.join("evil-kernel.iso")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("skipped: live-boot: kernel path"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn family_files_with_shell_or_grub_syntax_are_refused_naming_the_field() {
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    let good = include_str!("../../formats/live/casper.toml");
    let sikbin = fake_sik(&t);
    for (field, from, to) in [
        (
            "initramfs.newroot",
            "newroot = \"/root\"",
            "newroot = \"/root\\\"; reboot -f; \\\"\"",
        ),
        (
            "initramfs.medium",
            "medium = \"/isodevice\"",
            "medium = \"/isodevice $(reboot)\"",
        ),
        (
            "hook.phase",
            "phase = \"init-bottom\"",
            "phase = \"init-bottom/../../etc\"",
        ),
        (
            "class",
            "class = \"ubuntu\"",
            "class = \"ubuntu { set default=1 }\"",
        ),
        (
            "boot.configs",
            "configs = [",
            "configs = [\"/boot/grub/x;y.cfg\", ",
        ),
        (
            "boot.kernel",
            "kernel = [",
            "kernel = [\"/casper/vmlinuz }\", ",
        ),
        (
            "boot.args",
            "args = \"boot=casper",
            "args = \"boot=casper;reboot",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        t.write("medium/boot/formats/casper.toml", good.replace(from, to));
        let out = run(sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium));
        assert_fails(&out, 2, &["casper.toml", field]);
    }
    assert!(!medium.join("boot/grub/grub.cfg").exists());
}

#[test]
fn directory_media_never_follow_symlinks() {
    let t = TestDir::new();
    let sikbin = fake_sik(&t);
    // A host file the medium's writer should not get into the initrd.
    t.write("host/secret_key", "PRIVATE KEY\n");
    let medium = t.mkdir("medium");
    std::fs::create_dir_all(medium.join("boot/customize")).unwrap();
    std::os::unix::fs::symlink(t.join("host"), medium.join("boot/customize/initrd")).unwrap();
    let out = run(sik()
        .args(["boot", "generate", "--sik-binary"])
        .arg(&sikbin)
        .arg(&medium));
    assert_fails(&out, 2, &["boot/customize/initrd", "symlink"]);
    assert!(!medium.join("boot/sik/initrd.img").exists());

    // A symlinked directory on the way is refused the same way.
    std::fs::remove_file(medium.join("boot/customize/initrd")).unwrap();
    std::fs::remove_dir(medium.join("boot/customize")).unwrap();
    t.write("elsewhere/initrd/secret_key", "PRIVATE KEY\n");
    std::os::unix::fs::symlink(t.join("elsewhere"), medium.join("boot/customize")).unwrap();
    let out = run(sik()
        .args(["boot", "generate", "--sik-binary"])
        .arg(&sikbin)
        .arg(&medium));
    assert_fails(&out, 2, &["symlink"]);
    std::fs::remove_file(medium.join("boot/customize")).unwrap();

    // A symlinked grub.cfg: refused, and no grub.cfg.old copy of its target.
    let shadow = t.write("host/shadow", "root:secret\n");
    std::fs::set_permissions(&shadow, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(medium.join("boot/grub")).unwrap();
    std::os::unix::fs::symlink(&shadow, medium.join("boot/grub/grub.cfg")).unwrap();
    let out = run(sik()
        .args(["boot", "generate", "--sik-binary"])
        .arg(&sikbin)
        .arg(&medium));
    assert_fails(&out, 2, &["boot/grub/grub.cfg", "symlink"]);
    assert!(!medium.join("boot/grub/grub.cfg.old").exists());
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:secret\n");
    std::fs::remove_file(medium.join("boot/grub/grub.cfg")).unwrap();

    // A symlinked family file is not read.
    std::fs::create_dir_all(medium.join("boot/formats")).unwrap();
    std::os::unix::fs::symlink(&shadow, medium.join("boot/formats/x.toml")).unwrap();
    let out = run(sik()
        .args(["boot", "generate", "--sik-binary"])
        .arg(&sikbin)
        .arg(&medium));
    assert_fails(&out, 2, &["x.toml", "regular file"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
    std::fs::remove_file(medium.join("boot/formats/x.toml")).unwrap();

    // `add` into a symlinked boot/iso writes nothing outside the medium.
    let outside = t.mkdir("outside");
    std::fs::create_dir_all(medium.join("boot")).unwrap();
    std::os::unix::fs::symlink(&outside, medium.join("boot/iso")).unwrap();
    let iso = t.join("debian-live.iso");
    if have_tool("xorriso") {
        let iso = make_iso(
            &t,
            "debian-live",
            "d-live",
            &[("/live/vmlinuz", KERNEL), ("/live/initrd.img", INITRD)],
        );
        let out = run(sik().args(["boot", "add"]).arg(&iso).arg(&medium));
        assert_fails(&out, 2, &["boot/iso", "symlink"]);
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
    let _ = iso;

    // Symlinks inside customize/initrd are archived as symlinks, not followed.
    std::fs::remove_file(medium.join("boot/iso")).unwrap();
    std::fs::create_dir_all(medium.join("boot/customize/initrd/etc")).unwrap();
    std::os::unix::fs::symlink(
        t.join("host/secret_key"),
        medium.join("boot/customize/initrd/etc/key"),
    )
    .unwrap();
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(&sikbin)
            .arg(&medium),
    );
    let initrd = medium.join("boot/sik/initrd.img");
    let listing = sh(
        t.path(),
        &format!("gzip -dc '{}' | cpio -tv --quiet", initrd.display()),
    );
    assert!(
        listing.contains("etc/key -> "),
        "the symlink is archived: {listing}"
    );
    let hits = sh(
        t.path(),
        &format!(
            "gzip -dc '{}' | grep -a -c 'PRIVATE KEY' || true",
            initrd.display()
        ),
    );
    assert_eq!(hits.trim(), "0", "host file content packed");
}

#[test]
fn generate_refuses_a_sik_that_would_not_run_in_an_initramfs() {
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    let script = t.write("sik-script", "#!/bin/sh\necho sik\n");
    // busybox-static built for another machine: e_machine (bytes 18-19) = aarch64.
    let mut foreign = std::fs::read(which("busybox").expect("busybox-static")).unwrap();
    foreign[18..20].copy_from_slice(&183u16.to_le_bytes());
    let foreign = t.write("sik-aarch64", foreign);
    for (bin, why) in [
        // Debian's /bin/sh asks for the dynamic loader, like an ordinary cargo build.
        (Path::new("/bin/sh"), "dynamically linked"),
        (script.as_path(), "not an ELF executable"),
        (foreign.as_path(), "built for aarch64"),
    ] {
        let out = run(sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(bin)
            .arg(&medium));
        assert_fails(&out, 2, &["boot generate", &bin.display().to_string(), why]);
        assert!(!medium.join("boot/sik/initrd.img").exists());
        assert!(!medium.join("boot/grub/grub.cfg").exists());
        // install refuses it before the image exists.
        let img = t.join("stick.img");
        let out = run(sik()
            .args(["boot", "install", "--image"])
            .arg(&img)
            .args(["--size", "64M", "--sik-binary"])
            .arg(bin));
        assert_fails(&out, 2, &["boot install", why]);
        assert!(!img.exists());
    }
}

/// Without --sik-binary a release build puts the static copy it carries
/// into the initrd; a debug build (the usual test binary) carries none and
/// says so. Whichever this is, nothing dynamically linked is embedded, and
/// what is embedded runs in an empty root (no libraries, no loader).
#[test]
fn generate_without_sik_binary_embeds_a_static_sik_or_refuses() {
    if !require_tool("cpio") {
        return;
    }
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    let out = run(sik().args(["boot", "generate"]).arg(&medium));
    if out.status.code() == Some(2) {
        assert_fails(&out, 2, &["boot generate", "no static copy", "--release"]);
        assert!(!medium.join("boot/sik/initrd.img").exists());
        return;
    }
    assert!(out.status.success(), "{out:?}");
    let root = t.mkdir("empty-root");
    sh(
        &root,
        &format!(
            "gzip -dc '{}' | cpio -id --quiet sik/sik",
            medium.join("boot/sik/initrd.img").display()
        ),
    );
    let bytes = std::fs::read(root.join("sik/sik")).unwrap();
    assert_eq!(sik_boot::generate::initrd_binary_problem(&bytes), None);
    if require_root() {
        let help = run_ok(
            cmd("chroot")
                .arg(&root)
                .args(["/sik/sik", "link", "--help"]),
        );
        assert!(help.contains("--allow-directories"), "{help}");
    }
}

#[test]
fn add_refuses_files_the_medium_cannot_store_before_copying() {
    if !require_tool("xorriso") || !require_tool("mformat") || !require_tool("truncate") {
        return;
    }
    let t = TestDir::new();
    let img = t.join("small.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run_ok(
        cmd("mformat")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .args(["-F", "::"]),
    );
    let iso = make_iso(
        &t,
        "debian-live",
        "d-live",
        &[("/live/vmlinuz", KERNEL), ("/live/initrd.img", INITRD)],
    );
    // A valid ISO padded (sparse) to 4.5 GiB: over FAT32's file size limit.
    let big = t.join("big-live.iso");
    std::fs::copy(&iso, &big).unwrap();
    run_ok(cmd("truncate").args(["-s", "4608M"]).arg(&big));
    let out = run(sik().args(["boot", "add"]).arg(&big).arg(&img));
    assert_fails(
        &out,
        2,
        &["boot add", "FAT file size limit", "nothing was copied"],
    );
    // 80 MiB onto a 64 MiB medium: more than the free space.
    let mid = t.join("mid-live.iso");
    std::fs::copy(&iso, &mid).unwrap();
    run_ok(cmd("truncate").args(["-s", "80M"]).arg(&mid));
    let out = run(sik().args(["boot", "add"]).arg(&mid).arg(&img));
    assert_fails(
        &out,
        2,
        &["boot add", "bytes are free", "nothing was copied"],
    );
    // (mdir exits 1 on an empty filesystem.)
    let listing = run(cmd("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-/", "-b", "-i"])
        .arg(&img)
        .arg("::"));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains(".iso"), "{listing}");
    // What fits is copied and its size on the medium checked.
    let out = run_ok(sik().args(["boot", "add"]).arg(&iso).arg(&img));
    assert!(out.contains("boot/iso/debian-live.iso"), "{out}");
    let dir = run_ok(
        cmd("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-i"])
            .arg(&img)
            .arg("::/boot/iso"),
    );
    assert!(dir.contains("debian-live.iso"), "{dir}");

    // A directory medium: more than its filesystem's free space is refused.
    let medium = t.mkdir("medium");
    let huge = t.join("huge-live.iso");
    std::fs::copy(&iso, &huge).unwrap();
    run_ok(cmd("truncate").args(["-s", "15T"]).arg(&huge));
    let out = run(sik().args(["boot", "add"]).arg(&huge).arg(&medium));
    assert_fails(&out, 2, &["bytes are free", "nothing was copied"]);
    assert!(!medium.join("boot/iso/huge-live.iso").exists());
}

#[test]
fn generate_pins_a_directory_medium_that_is_a_filesystem_root_by_its_uuid() {
    if !require_root()
        || !require_tool("mkfs.ext4")
        || !require_tool("blkid")
        || !require_tool("xorriso")
    {
        return;
    }
    let t = TestDir::new();
    let img = t.join("fs.img");
    run_ok(cmd("mkfs.ext4").args(["-q", "-F"]).arg(&img).arg("16M"));
    let uuid = run_ok(cmd("blkid").args(["-o", "value", "-s", "UUID"]).arg(&img));
    let uuid = uuid.trim().to_string();
    let mnt = t.mkdir("mnt");
    let iso = make_iso(
        &t,
        "debian-live",
        "d-live",
        &[("/live/vmlinuz", KERNEL), ("/live/initrd.img", INITRD)],
    );
    run_ok(cmd("mount").args(["-o", "loop"]).arg(&img).arg(&mnt));
    std::fs::create_dir_all(mnt.join("boot/iso")).unwrap();
    std::fs::copy(&iso, mnt.join("boot/iso/debian-live.iso")).unwrap();
    let sikbin = fake_sik(&t);
    let out = run(sik()
        .args(["boot", "generate", "--json", "--sik-binary"])
        .arg(&sikbin)
        .arg(&mnt));
    let cfg = std::fs::read_to_string(mnt.join("boot/grub/grub.cfg")).unwrap_or_default();
    let _ = cmd("umount").arg(&mnt).status();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["medium_uuid"], uuid.as_str(), "{doc:#}");
    assert!(
        !doc["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("search --file")),
        "{doc:#}"
    );
    assert!(
        cfg.contains(&format!("search --no-floppy --fs-uuid --set=root {uuid}\n")),
        "{cfg}"
    );
}

#[test]
fn install_update_keeps_every_user_file_and_replaces_grub() {
    for tool in ["xorriso", "mformat", "mcopy", "grub-mkimage"] {
        if !require_tool(tool) {
            return;
        }
    }
    if !require_root() || !require_exfat_tools() {
        return;
    }
    let t = TestDir::new();
    let sikbin = fake_sik(&t);
    let disk = t.join("disk.img");
    let install = |extra: &[&str]| {
        let mut c = sik();
        c.args(["boot", "install", "--json", "--image"])
            .arg(&disk)
            .args(["--size", "160M", "--sik-binary"])
            .arg(&sikbin)
            .args(extra);
        c
    };
    run_ok(&mut install(&[]));
    let iso = make_iso(
        &t,
        "debian-live",
        "d-live",
        &[("/live/vmlinuz", KERNEL), ("/live/initrd.img", INITRD)],
    );
    run_ok(sik().args(["boot", "add"]).arg(&iso).arg(&disk));
    t.write("overlay/etc/motd", "hello\n");
    t.write(
        "overlay/a/b/c/a-name-longer-than-fifteen-characters.txt",
        "x\n",
    );
    let key = t.write("signer.pub", "ssh-ed25519 AAAA test\n");
    let home: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let home_img = t.write("home.img", &home);
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(t.join("overlay"))
            .arg(&disk)
            .args(["--to", "boot/customize/overlay"]),
    );
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(&key)
            .arg(&disk)
            .args(["--to", "boot/keys/"]),
    );
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(&home_img)
            .arg(&disk)
            .args(["--to", "home.img"]),
    );
    // A name exFAT refuses is refused before anything is copied.
    let out = run(sik()
        .args(["boot", "add"])
        .arg(&key)
        .arg(&disk)
        .args(["--to", "boot/keys/a:b"]));
    assert_fails(&out, 2, &["refuses the name", "nothing was copied"]);
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(&sikbin)
            .arg(&disk),
    );
    let user = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .iter()
            .filter(|(k, _)| !k.starts_with("boot/sik/") && !k.starts_with("boot/grub/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = user(&exfat_files(&disk));
    assert!(before.contains_key("home.img") && before.contains_key("boot/iso/debian-live.iso"));
    assert_eq!(before["home.img"], home);

    // Without --force an existing medium is refused, naming what would be lost.
    let out = run(&mut install(&[]));
    assert_fails(
        &out,
        2,
        &["already holds", "home.img", "--update", "--force"],
    );
    assert_eq!(user(&exfat_files(&disk)), before);

    // The boot chain damaged: core.img zeroed, BOOTX64.EFI replaced by junk.
    let (esp, _, _) = mbr_partition(&disk, 1);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.write_all_at(&vec![0u8; 64 << 10], 512).unwrap();
    }
    let junk = t.write("junk.efi", "not an EFI program");
    run_ok(
        cmd("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i"])
            .arg(format!("{}@@{esp}", disk.display()))
            .arg(&junk)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    );
    let out = run_ok(
        sik()
            .args(["boot", "install", "--json", "--sik-binary"])
            .arg(&sikbin)
            .arg("--update")
            .arg(&disk),
    );
    let doc = assert_schema("install", &out);
    assert_eq!(doc["action"], "update");
    // Every user file byte-identical; GRUB's files replaced.
    let after = exfat_files(&disk);
    assert_eq!(user(&after), before);
    assert!(after.contains_key("boot/sik/initrd.img") && after.contains_key("boot/grub/grub.cfg"));
    let data = std::fs::read(&disk).unwrap();
    let core_len = doc["bios_core_bytes"].as_u64().unwrap() as usize;
    assert!(core_len > 0 && data[512..512 + core_len].iter().any(|b| *b != 0));
    let efi = t.join("BOOTX64.EFI");
    run_ok(
        cmd("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-n", "-i"])
            .arg(format!("{}@@{esp}", disk.display()))
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&efi),
    );
    let efi = std::fs::read(&efi).unwrap();
    assert_eq!(&efi[..2], b"MZ");
    assert_eq!(efi.len() as u64, doc["efi_bytes"].as_u64().unwrap());

    // --force erases.
    run_ok(&mut install(&["--force"]));
    assert!(!exfat_files(&disk).contains_key("home.img"));

    // FAT32 DATA on request: mtools reads it at 1 MiB, partition type 0x0C.
    let fat = t.join("fat.img");
    let out = run_ok(
        sik()
            .args(["boot", "install", "--json", "--data-fs", "fat32", "--image"])
            .arg(&fat)
            .args(["--size", "160M", "--sik-binary"])
            .arg(&sikbin),
    );
    let doc = assert_schema("install", &out);
    assert_eq!(doc["data_fs"], "fat32");
    assert_eq!(mbr_partition(&fat, 0).2, 0x0C);
    assert!(fat_listing(&fat, 1 << 20, "::").contains("::/boot/grub/grub.cfg"));
    // GRUB finds DATA by its serial: the ESP (also FAT, made the same
    // second) must not share it.
    let serial_at = |off: u64| {
        let data = std::fs::read(&fat).unwrap();
        u32::from_le_bytes(
            data[off as usize + 67..off as usize + 71]
                .try_into()
                .unwrap(),
        )
    };
    let (fat_esp, _, _) = mbr_partition(&fat, 1);
    assert_ne!(serial_at(1 << 20), serial_at(fat_esp));

    // A directory medium: --update writes EFI/BOOT/BOOTX64.EFI into it and
    // keeps its files.
    let dir = t.mkdir("stick");
    std::fs::create_dir_all(dir.join("boot/grub")).unwrap();
    std::fs::write(dir.join("boot/grub/grub.cfg"), "# old\n").unwrap();
    std::fs::write(dir.join("home.img"), &home).unwrap();
    run_ok(
        sik()
            .args(["boot", "install", "--sik-binary"])
            .arg(&sikbin)
            .arg("--update")
            .arg(&dir),
    );
    assert_eq!(std::fs::read(dir.join("home.img")).unwrap(), home);
    assert_eq!(
        &std::fs::read(dir.join("EFI/BOOT/BOOTX64.EFI")).unwrap()[..2],
        b"MZ"
    );
    assert!(dir.join("boot/sik/initrd.img").is_file());
}

/// The initrd's `sik/iso-device.sh` run as dracut's initqueue would, in a
/// private mount namespace whose `/proc/cmdline` and `/run` are the test's:
/// the medium (ext4 here: the host has no vfat) found by its UUID, the ISO
/// file on it attached to a read-only loop device that carries the ISO's
/// own label (blkid reads it as udev would), done once.
#[test]
fn iso_device_hook_makes_the_iso_a_block_device_with_its_label() {
    if !require_root() {
        return;
    }
    for tool in [
        "xorriso",
        "cpio",
        "losetup",
        "blkid",
        "mkfs.ext4",
        "unshare",
    ] {
        if !require_tool(tool) {
            return;
        }
    }
    let t = TestDir::new();
    let iso = make_iso(
        &t,
        "live",
        "MY-LIVE-LABEL",
        &[("/LiveOS/squashfs.img", "sq")],
    );
    std::fs::create_dir_all(t.join("medium/boot/iso")).unwrap();
    std::fs::copy(&iso, t.join("medium/boot/iso/live.iso")).unwrap();
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(fake_sik(&t))
            .arg(t.join("medium")),
    );
    sh(
        t.path(),
        "gzip -dc medium/boot/sik/initrd.img | cpio -i --quiet --to-stdout sik/iso-device.sh > iso-device.sh",
    );
    let uuid = "5e1c0de0-1234-4abc-8def-0123456789ab";
    let img = t.join("medium.img");
    run_ok(
        cmd("mkfs.ext4")
            .args(["-q", "-F", "-U", uuid, "-d"])
            .arg(t.join("medium"))
            .arg(&img)
            .arg("16M"),
    );
    let medium_dev = run_ok(cmd("losetup").args(["-f", "--show"]).arg(&img))
        .trim()
        .to_string();
    // One boot: the hook runs on several initqueue passes.
    let boot = |cmdline: &str, after: &str| {
        t.write("cmdline", format!("{cmdline}\n"));
        let out = run(cmd("unshare").args(["-m", "sh", "-c"]).arg(format!(
            "mount --make-rprivate / && mount --bind cmdline /proc/cmdline && mount -t tmpfs run /run && \
             sh iso-device.sh && sh iso-device.sh && {after}"
        )).current_dir(t.path()));
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = boot(
        &format!("root=live:CDLABEL=MY-LIVE-LABEL sik.iso={uuid}:/boot/iso/live.iso quiet"),
        "set -- $(cat /run/sik/iso-device); echo \"dev=$1\"; blkid -p -o value -s LABEL \"$1\"; \
         blkid -p -o value -s TYPE \"$1\"; cat /sys/block/${1#/dev/}/ro; losetup -n -O BACK-FILE \"$1\"; \
         losetup -d \"$1\"; umount /run/sik/medium",
    );
    let _ = cmd("losetup").arg("-d").arg(&medium_dev).status();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("dev=/dev/loop")),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        &lines[1..5],
        [
            "MY-LIVE-LABEL",
            "iso9660",
            "1",
            "/run/sik/medium/boot/iso/live.iso"
        ],
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stderr.matches("is the block device /dev/loop").count(),
        1,
        "once, whatever the passes: {stderr}"
    );
    assert!(stderr.contains("sik: /boot/iso/live.iso (on "), "{stderr}");

    // Without sik.iso= it does nothing at all.
    let (stdout, stderr) = boot(
        "root=live:CDLABEL=MY-LIVE-LABEL quiet",
        "ls /run/sik 2>/dev/null | wc -l",
    );
    assert_eq!(stdout.trim(), "0", "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // A medium that is not there: it says it waits, once.
    let (_, stderr) = boot(
        "sik.iso=0000-0000:/boot/iso/live.iso",
        "test ! -e /run/sik/iso-device",
    );
    assert_eq!(
        stderr.matches("waiting for the medium").count(),
        1,
        "{stderr}"
    );
}
