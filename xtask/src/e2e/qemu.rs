//! One QEMU boot of a medium: the firmware (SeaBIOS, OVMF, OVMF with
//! Secure Boot enforcing), the GRUB menu driven over the serial console, the
//! guest's serial log captured until its report and power-off.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Result;

pub(super) const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Serial console lines after which a guest will not reach its report.
const FATAL: &[&str] = &[
    "reboot: System halted",
    "Kernel panic - not syncing",
    "dracut: Refusing to continue",
    "(initramfs) ",
    // GRUB under Secure Boot: shim refused the kernel's signature.
    "bad shim signature",
];

/// The firmware a boot starts with.
#[allow(dead_code)]
pub(super) enum Firmware {
    /// QEMU's default SeaBIOS.
    Bios,
    /// OVMF without Secure Boot.
    Uefi,
    /// OVMF with Secure Boot enforcing: q35 with SMM, the `secboot` code
    /// image and a fresh copy of the given variable store (written by the
    /// firmware during the boot, so each boot gets its own copy).
    SecureBoot { code: PathBuf, vars: PathBuf },
}

impl Firmware {
    /// Short name for tables and log file names.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::SecureBoot { .. } => "uefi-secureboot",
        }
    }

    /// How the results table names it.
    pub(super) fn title(&self) -> &'static str {
        match self {
            Firmware::Bios => "SeaBIOS",
            Firmware::Uefi => "OVMF (UEFI)",
            Firmware::SecureBoot { .. } => "OVMF (UEFI, Secure Boot enforcing)",
        }
    }

    fn args(&self, cmd: &mut Command, log: &Path) -> Result {
        match self {
            Firmware::Bios => {}
            Firmware::Uefi => {
                cmd.arg("-bios").arg(OVMF);
            }
            Firmware::SecureBoot { code, vars } => {
                let copy = log.with_extension("vars.fd");
                std::fs::copy(vars, &copy).map_err(|e| format!("{}: {e}", vars.display()))?;
                cmd.args(["-machine", "q35,smm=on"])
                    .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,file={},readonly=on",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        copy.display()
                    ));
            }
        }
        Ok(())
    }
}

/// Boot the disk in QEMU, pick menu entry `entry` through the serial
/// console, wait for the guest's report and its power-off. Returns the
/// serial log, the seconds from start to the report's end, and a failure
/// when QEMU had to be killed.
pub(super) fn boot(
    disk: &Path,
    firmware: &Firmware,
    entry: usize,
    titles: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(String, f64, Option<String>)> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-m",
        "1024",
        "-display",
        "none",
        "-vga",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()));
    firmware.args(&mut cmd, log)?;
    if Path::new("/dev/kvm").exists()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
        && std::env::var_os("SIK_E2E_KVM").is_some()
    {
        cmd.args(["-accel", "kvm"]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().ok_or("qemu: no stdout")?;
    let reader = {
        let buf = Arc::clone(&buf);
        let mut file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&chunk[..n]);
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        })
    };
    let mut stdin = child.stdin.take();
    // Menu navigation: keys can get lost (GRUB may not read the serial line
    // yet, OVMF draws the menu twice), so each key is sent again until the
    // highlight (`*TITLE` in GRUB's redraw) shows it arrived.
    let mut menu_at: Option<usize> = None;
    let mut last_key = Instant::now();
    let mut enter_at: Option<(Instant, usize)> = None;
    let mut booting = false;
    let mut reported: Option<f64> = None;
    let mut failure = None;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let text = String::from_utf8_lossy(&buf.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        if menu_at.is_none() && text.contains("highlighted entry will be") {
            menu_at = Some(text.len());
            last_key = Instant::now() - Duration::from_secs(10);
        }
        if let (Some(at), false) = (menu_at, booting)
            && let Some(w) = stdin.as_mut()
        {
            let tail = text.get(at..).unwrap_or("");
            if let Some((sent, len)) = enter_at {
                // Enter was sent: GRUB clears the screen and loads the kernel.
                if text.get(len..).unwrap_or("").contains("Loading ") {
                    booting = true;
                } else if sent.elapsed() > Duration::from_secs(5) {
                    let _ = w.write_all(b"\r");
                    let _ = w.flush();
                    enter_at = Some((Instant::now(), text.len()));
                }
            } else if last_key.elapsed() > Duration::from_secs(2) {
                let current = highlighted(tail, titles).unwrap_or(0);
                let key: &[u8] = match current.cmp(&entry) {
                    std::cmp::Ordering::Equal => b"\r",
                    std::cmp::Ordering::Less => b"\x1b[B",
                    std::cmp::Ordering::Greater => b"\x1b[A",
                };
                let _ = w.write_all(key);
                let _ = w.flush();
                last_key = Instant::now();
                if key == b"\r" {
                    enter_at = Some((Instant::now(), text.len()));
                }
            }
        }
        if reported.is_none() && text.contains("SIK-E2E: end") {
            reported = Some(start.elapsed().as_secs_f64());
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        // The guest gave up (it halts instead of powering off): stop now.
        if let Some(m) = FATAL.iter().find(|m| text.contains(*m)) {
            std::thread::sleep(Duration::from_secs(2));
            failure = Some(format!("the guest stopped: `{m}` (QEMU killed)"));
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        let waited = start.elapsed();
        let late = match reported {
            Some(t) => waited.as_secs_f64() > t + 120.0,
            None => waited > timeout,
        };
        if late {
            failure = Some(match reported {
                Some(_) => "the guest reported but did not power off within 120 s (QEMU killed)"
                    .to_string(),
                None => format!(
                    "no report from the guest within {} s (QEMU killed)",
                    timeout.as_secs()
                ),
            });
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
    }
    drop(stdin);
    let _ = reader.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !err.trim().is_empty() {
        eprintln!("qemu stderr: {}", err.trim());
    }
    let text =
        String::from_utf8_lossy(&buf.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let seconds = reported.unwrap_or_else(|| start.elapsed().as_secs_f64());
    Ok((text, seconds, failure))
}

/// The index of the menu entry GRUB drew last as highlighted (`*TITLE`).
fn highlighted(text: &str, titles: &[String]) -> Option<usize> {
    titles
        .iter()
        .enumerate()
        .filter_map(|(i, t)| text.rfind(&format!("*{t}")).map(|pos| (pos, i)))
        .max()
        .map(|(_, i)| i)
}
