//! What a boot of the main medium must show: the guest's `SIK-E2E:` report
//! lines (written by `tests/e2e/root`'s report unit) checked against the
//! family booted.

/// One live ISO family under test.
pub(super) struct Family {
    /// Short name (table row).
    pub(super) name: &'static str,
    /// File name on the medium.
    pub(super) iso: &'static str,
    /// What the generated kernel arguments must hold.
    pub(super) arg: &'static str,
    /// Where that initramfs mounts the partition holding the ISO.
    pub(super) medium_mount: &'static str,
}

pub(super) const FAMILIES: &[Family] = &[
    Family {
        name: "debian live-boot (initramfs-tools)",
        iso: "debian-live.iso",
        arg: "findiso=/boot/iso/debian-live.iso",
        medium_mount: "/run/live/findiso",
    },
    Family {
        name: "fedora dmsquash-live (dracut)",
        iso: "fedora-live.iso",
        arg: "iso-scan/filename=/boot/iso/fedora-live.iso",
        medium_mount: "/run/initramfs/isoscan",
    },
];

/// The value after `key` on the guest's first `SIK-E2E: key...` line.
pub(super) fn find_value(text: &str, key: &str) -> Option<String> {
    guest_lines(text).find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The guest's report lines, without the `SIK-E2E: ` prefix.
pub(super) fn guest_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|l| {
        l.find("SIK-E2E: ")
            .map(|i| l[i + 9..].trim_end_matches('\r'))
    })
}

/// Every check of one boot; returns what failed.
pub(super) fn check(fam: &Family, text: &str, earlier_homes: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    let lines: Vec<&str> = guest_lines(text).collect();
    let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
    let has_with = |p: &str, s: &str| lines.iter().any(|l| l.starts_with(p) && l.contains(s));
    if !text.contains(&format!("from /boot/iso/{}", fam.iso)) {
        bad.push(format!(
            "GRUB did not say it loads the kernel from /boot/iso/{}",
            fam.iso
        ));
    }
    if !has("end") {
        bad.push("the guest's report did not complete (no `SIK-E2E: end`)".into());
        return bad;
    }
    if !has_with("cmdline ", fam.arg) {
        bad.push(format!("kernel command line lacks {}", fam.arg));
    }
    if !has_with("mount ", fam.medium_mount) {
        bad.push(format!(
            "the initramfs did not mount the medium at {}",
            fam.medium_mount
        ));
    }
    if !has_with("loop ", fam.iso) {
        bad.push(format!("no loop device backed by {}", fam.iso));
    }
    if !has_with(
        "symlink /usr/bin/sik-e2e-hello -> ",
        "/sik/extensions/e2e-signed/mnt/",
    ) || !has("exists /usr/bin/sik-e2e-hello")
    {
        bad.push("the signed extension's command is not a working symlink into its mount".into());
    }
    if !has_with(
        "symlink /usr/lib/firmware/sik-e2e/e2e-fw.bin -> ",
        "/sik/extensions/e2e-signed/mnt/",
    ) || !has("firmware sik-e2e-firmware-blob-v1")
    {
        bad.push(
            "the signed extension's firmware file is not a working symlink into its mount".into(),
        );
    }
    // dm-verity: the hook loaded it (from the initramfs or the new root),
    // sik link said how it verified the image, the state records it and the
    // booted system still has the image behind a verity device over a loop
    // device.
    if !text
        .lines()
        .any(|l| l.contains("sik: dm-verity: ") && l.contains("loaded"))
    {
        bad.push("the boot hook did not report dm-verity loaded".into());
    }
    if !text
        .lines()
        .any(|l| l.contains("e2e-signed: verified by dm-verity"))
    {
        bad.push("the hook's log does not say e2e-signed was verified by dm-verity".into());
    }
    if !lines.contains(&"verified e2e-signed dm-verity") {
        bad.push("the linker's state does not record e2e-signed as verified by dm-verity".into());
    }
    if !lines
        .iter()
        .any(|l| l.starts_with("dm dm-") && l.contains(" sik-verity-e2e-signed over loop"))
    {
        bad.push("no sik-verity-e2e-signed device-mapper device over a loop device".into());
    }
    if !has("command-ok hello from the signed extension") {
        bad.push("the signed extension's command did not run".into());
    }
    if !has_with("extension-run ran for ", "e2e-signed") {
        bad.push("the signed extension's ExtensionRun left no mark".into());
    }
    // The codec libraries from real .debs, linked at boot and known to the
    // dynamic linker through the ldconfig trigger the hook's link ran in
    // the new root (Debian's multiarch directory; Fedora's ldconfig does
    // not scan it).
    // (merged /usr: ldconfig names it by the first directory it scans,
    // /lib/x86_64-linux-gnu.)
    if fam.iso == "debian-live.iso"
        && !lines.iter().any(|l| {
            l.starts_with("ldconfig-p libFLAC.so.12 (libc6,x86-64) => ")
                && l.ends_with("lib/x86_64-linux-gnu/libFLAC.so.12")
        })
    {
        bad.push("ldconfig -p does not list the codec extension's libFLAC.so.12".into());
    }
    if !has_with(
        "symlink /usr/lib/x86_64-linux-gnu/libFLAC.so.12 -> ",
        "/sik/extensions/e2e-codecs/mnt/",
    ) {
        bad.push("the codec extension's library is not a symlink into its mount".into());
    }
    if !has("unsigned-absent") {
        bad.push("the unsigned extension was linked".into());
    }
    let refusal = text.lines().any(|l| {
        l.contains("e2e-unsigned")
            && (l.contains("refus") || l.contains("unsigned") && l.contains("sign"))
    });
    if !refusal {
        bad.push("no refusal of e2e-unsigned.ExtensionImage with its reason in the log".into());
    }
    // The AppImages of Applications/: the signed one is in the menu and
    // its entry runs it on the medium; the unsigned one is not.
    if !has_with("app-entry ", "SIK E2E Signed App") {
        bad.push(
            "no desktop entry for the signed AppImage in /usr/local/share/applications".into(),
        );
    }
    if has_with("app-entry ", "SIK E2E Unsigned App") {
        bad.push("the unsigned AppImage was integrated".into());
    }
    if !has_with(
        "app-exec ",
        &format!("{}/Applications/e2e-Signed.AppImage", fam.medium_mount),
    ) {
        bad.push("the signed AppImage's entry does not run it on the medium".into());
    }
    if !has("app-ran hello from the signed AppImage e2e-arg") {
        bad.push("the signed AppImage's entry's command line did not run it".into());
    }
    if !has("overlay overlay file from boot/customize/overlay") {
        bad.push("the overlay file is missing".into());
    }
    if !has("customized by boot/customize/init") {
        bad.push("boot/customize/init did not run".into());
    }
    if !has("home-written ") {
        bad.push("could not write to $HOME".into());
    }
    if !has_with("home ", "loop") {
        bad.push("/home is not the home.img loop mount".into());
    }
    if let Some(first) = earlier_homes.first()
        && !has_with("home-before ", first)
    {
        bad.push(format!(
            "the file written to $HOME in the first boot ({first}) is not there"
        ));
    }
    bad
}

/// The per-ISO extension ([`super::medium::PER_ISO`], in
/// `boot/extensions/debian-live/x86_64/`): linked in the Debian ISO's boot
/// (the linker's state has a directory for it), absent in any other.
pub(super) fn check_per_iso(fam: &Family, text: &str) -> Vec<String> {
    let name = super::medium::PER_ISO;
    let linked =
        guest_lines(text).any(|l| l.starts_with("state ") && l.ends_with(&format!("/{name}")));
    let own = fam.iso == "debian-live.iso";
    match (own, linked) {
        (true, false) => vec![format!(
            "the Debian ISO's own extension {name} was not linked in its boot"
        )],
        (false, true) => vec![format!(
            "{name}, the Debian ISO's own extension, was linked in a boot of {}",
            fam.iso
        )],
        _ => Vec::new(),
    }
}

/// A boot of an ISO's factory-state entry: the ISO boots (GRUB loads its
/// kernel, the report completes) with nothing of ours: no hook ran (no
/// `sik: ` line), no `sik.iso-name=` argument, no extension linked (no linker
/// state, the extension's command missing), no AppImage in the menu, no overlay file, no
/// customization, `/home` not the `home.img` loop mount.
pub(super) fn check_factory(fam: &Family, text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let lines: Vec<&str> = guest_lines(text).collect();
    let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
    if !text.contains(&format!("from /boot/iso/{}", fam.iso)) {
        bad.push(format!(
            "GRUB did not say it loads the kernel from /boot/iso/{}",
            fam.iso
        ));
    }
    if !has("end") {
        bad.push("the guest's report did not complete (no `SIK-E2E: end`)".into());
        return bad;
    }
    if !lines
        .iter()
        .any(|l| l.starts_with("cmdline ") && l.contains(fam.arg))
    {
        bad.push(format!("kernel command line lacks {}", fam.arg));
    }
    if lines
        .iter()
        .any(|l| l.starts_with("cmdline ") && l.contains("sik.iso-name="))
    {
        bad.push("the factory entry passed sik.iso-name=".into());
    }
    if let Some(l) = text.lines().find(|l| l.contains("sik: ")) {
        bad.push(format!("our boot hook ran: {}", l.trim()));
    }
    if let Some(l) = lines.iter().find(|l| l.starts_with("state ")) {
        bad.push(format!("an extension or overlay was linked: {l}"));
    }
    if !has("missing /usr/bin/sik-e2e-hello") || has("command-ok") {
        bad.push("the signed extension's command is there".into());
    }
    if !has("app-none") || has("app-entry ") {
        bad.push("an AppImage of Applications/ was integrated".into());
    }
    if !has("overlay-missing") {
        bad.push("the overlay file is there".into());
    }
    if !has("customize-missing") || has("customize-unit active") {
        bad.push("boot/customize/init ran".into());
    }
    if lines
        .iter()
        .any(|l| l.starts_with("home ") && l.contains("loop"))
    {
        bad.push("/home is the home.img loop mount".into());
    }
    bad
}
