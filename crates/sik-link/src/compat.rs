//! Compatibility of an extension with ROOT: the image's extension-release
//! against ROOT's os-release, following systemd-sysext's rules.

use sik_image::release::ReleaseFields;

/// The systemd architecture name of the machine this program runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// Check `ext` (extension-release) against `os` (ROOT's os-release) on a
/// machine of architecture `arch`. `Err` holds the reason of a mismatch.
///
/// * `ARCHITECTURE`, when set and not `_any`, must equal `arch`.
/// * `ID` must be set; `_any` matches every ROOT, otherwise it must equal
///   ROOT's `ID`.
/// * When both set `SYSEXT_LEVEL`, they must be equal; otherwise the
///   extension's `VERSION_ID`, when set, must equal ROOT's (a ROOT without
///   `VERSION_ID`, a rolling release, accepts any).
pub fn check(ext: &ReleaseFields, os: &ReleaseFields, arch: &str) -> Result<(), String> {
    if let Some(a) = ext.get("ARCHITECTURE")
        && a != "_any"
        && a != arch
    {
        return Err(format!(
            "built for architecture {a}, this machine is {arch}"
        ));
    }
    let Some(id) = ext.get("ID") else {
        return Err("extension-release has no ID".into());
    };
    if id == "_any" {
        return Ok(());
    }
    let host_id = os.get("ID").unwrap_or("linux");
    if id != host_id {
        return Err(format!("built for ID={id}, ROOT is ID={host_id}"));
    }
    if let (Some(e), Some(h)) = (ext.get("SYSEXT_LEVEL"), os.get("SYSEXT_LEVEL")) {
        if e != h {
            return Err(format!(
                "built for SYSEXT_LEVEL={e}, ROOT has SYSEXT_LEVEL={h}"
            ));
        }
        return Ok(());
    }
    if let (Some(e), Some(h)) = (ext.get("VERSION_ID"), os.get("VERSION_ID"))
        && e != h
    {
        return Err(format!(
            "built for {id} VERSION_ID={e}, ROOT has VERSION_ID={h}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> ReleaseFields {
        ReleaseFields::parse(s)
    }

    #[test]
    fn rules() {
        let debian = f("ID=debian\nVERSION_ID=12\n");
        assert!(check(&f("ID=_any\n"), &debian, "x86-64").is_ok());
        assert!(check(&f("ID=debian\nVERSION_ID=12\n"), &debian, "x86-64").is_ok());
        assert!(check(&f("ID=debian\n"), &debian, "x86-64").is_ok());
        assert!(
            check(&f("ID=debian\nVERSION_ID=11\n"), &debian, "x86-64")
                .unwrap_err()
                .contains("VERSION_ID=11")
        );
        assert!(
            check(&f("ID=fedora\n"), &debian, "x86-64")
                .unwrap_err()
                .contains("ID=fedora")
        );
        assert!(
            check(&f("VERSION_ID=12\n"), &debian, "x86-64")
                .unwrap_err()
                .contains("no ID")
        );
        assert!(
            check(&f("ID=_any\nARCHITECTURE=arm64\n"), &debian, "x86-64")
                .unwrap_err()
                .contains("arm64")
        );
        assert!(check(&f("ID=_any\nARCHITECTURE=_any\n"), &debian, "x86-64").is_ok());
        let lvl = f("ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=2\n");
        assert!(
            check(
                &f("ID=debian\nVERSION_ID=11\nSYSEXT_LEVEL=2\n"),
                &lvl,
                "x86-64"
            )
            .is_ok()
        );
        assert!(check(&f("ID=debian\nSYSEXT_LEVEL=3\n"), &lvl, "x86-64").is_err());
        assert!(check(&f("ID=arch\nVERSION_ID=1\n"), &f("ID=arch\n"), "x86-64").is_ok());
    }
}
