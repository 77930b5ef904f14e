//! `sik-runtime`: the AppImage type 2 runtime of SystemImageKit.
//!
//! It is the ELF at the start of every AppImage `sik create appimage` writes;
//! the SquashFS holding the AppDir follows it directly. At start it mounts
//! that SquashFS read-only with FUSE and runs `AppRun`; where FUSE is not
//! usable it extracts the SquashFS once into a cache directory keyed by the
//! image's digest and runs from there. It reads every compression backhand
//! reads (gzip, xz, lz4, zstd).
//!
//! ```text
//! ./App-1.0-x86_64.AppImage --appimage-offset
//! ./App-1.0-x86_64.AppImage --appimage-extract 'usr/share/*'
//! APPIMAGE_EXTRACT_AND_RUN=1 ./App-1.0-x86_64.AppImage args…
//! ```

mod extract;
mod fs;
mod glob;
mod mount;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use sha2::{Digest, Sha256};

// The reserved sections of a type 2 runtime. An explicit section keeps the
// zero arrays out of .bss (they occupy file bytes, PROGBITS) and `main`
// references them so the linker's section garbage collection keeps them.
#[used]
#[unsafe(link_section = ".digest_md5")]
static DIGEST_MD5: [u8; 16] = [0; 16];
#[used]
#[unsafe(link_section = ".upd_info")]
static UPD_INFO: [u8; 1024] = [0; 1024];
#[used]
#[unsafe(link_section = ".sha256_sig")]
static SHA256_SIG: [u8; 1024] = [0; 1024];
#[used]
#[unsafe(link_section = ".sig_key")]
static SIG_KEY: [u8; 8192] = [0; 8192];

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The AppImage being run and where its SquashFS starts.
struct Image {
    /// Absolute path of the AppImage.
    path: PathBuf,
    /// SquashFS offset (end of the ELF).
    offset: u64,
    layout: sik_image::elf::ElfLayout,
}

fn die(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sik-runtime: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    std::hint::black_box((&DIGEST_MD5, &UPD_INFO, &SHA256_SIG, &SIG_KEY));
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().cloned().unwrap_or_default();
    let rest: Vec<OsString> = args.iter().skip(1).cloned().collect();
    let image = match open_image() {
        Ok(i) => i,
        Err(e) => return die(e),
    };
    let first = rest.first().map(|a| a.as_bytes()).unwrap_or(b"");
    if let Some(opt) = first.strip_prefix(b"--appimage-") {
        let opt = String::from_utf8_lossy(opt).into_owned();
        return option(&image, &opt, &rest[1..], &argv0);
    }
    let force = std::env::var_os("APPIMAGE_EXTRACT_AND_RUN").is_some_and(|v| v == "1");
    run(&image, &argv0, &rest, force)
}

fn open_image() -> Result<Image, String> {
    let path = match std::env::var_os("TARGET_APPIMAGE").filter(|v| !v.is_empty()) {
        Some(t) => PathBuf::from(t),
        None => std::fs::read_link("/proc/self/exe")
            .map_err(|e| format!("cannot find own file: {e}"))?,
    };
    let path = std::fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut f = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let layout =
        sik_image::elf::read_layout(&mut f).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Image {
        offset: layout.end,
        path,
        layout,
    })
}

fn help() {
    println!(
        "AppImage runtime of SystemImageKit {VERSION}

Usage: APPIMAGE [--appimage-OPTION] [ARGUMENTS…]

Without an --appimage- option the AppImage runs its application with ARGUMENTS.
It mounts its SquashFS with FUSE; where FUSE is not usable it extracts it once
into $XDG_CACHE_HOME/sik-appimage/ and runs from there.

Options:
  --appimage-help                 Print this help
  --appimage-version              Print the runtime's version
  --appimage-offset               Print the offset of the SquashFS in the file
  --appimage-extract [PATTERN]    Extract (entries matching PATTERN) into ./squashfs-root
  --appimage-extract-and-run ...  Run from an extracted copy instead of a FUSE mount
  --appimage-mount                Mount, print the mount point, wait until interrupted
  --appimage-signature            Print the signature (.sha256_sig)
  --appimage-updateinfo[rmation]  Print the update information (.upd_info)
  --appimage-portable-home        Create NAME.AppImage.home beside the file (used as $HOME)
  --appimage-portable-config      Create NAME.AppImage.config beside the file (used as $XDG_CONFIG_HOME)

Environment: TARGET_APPIMAGE (operate on that file), APPIMAGE_EXTRACT_AND_RUN=1,
TMPDIR, FUSERMOUNT_PROG (mount helper to use), XDG_CACHE_HOME."
    );
}

fn section_text(image: &Image, name: &str) -> Result<String, String> {
    let Some(sec) = image.layout.section(name) else {
        return Ok(String::new());
    };
    let mut f = File::open(&image.path).map_err(|e| e.to_string())?;
    let bytes = sik_image::elf::read_section(&mut f, sec).map_err(|e| e.to_string())?;
    Ok(sik_image::elf::nul_padded_text(&bytes).unwrap_or_default())
}

fn option(image: &Image, opt: &str, rest: &[OsString], argv0: &OsStr) -> ExitCode {
    match opt {
        "help" => help(),
        "version" => println!("sik-runtime {VERSION}"),
        "offset" => println!("{}", image.offset),
        "signature" | "updateinfo" | "updateinformation" => {
            let name = if opt == "signature" {
                ".sha256_sig"
            } else {
                ".upd_info"
            };
            match section_text(image, name) {
                Ok(t) => println!("{t}"),
                Err(e) => return die(e),
            }
        }
        "extract" => {
            let pattern = rest.first().map(|p| p.as_bytes().to_vec());
            let fs = match extract::open(&image.path, image.offset) {
                Ok(f) => f,
                Err(e) => return die(e),
            };
            let wanted = |rel: &Path| match &pattern {
                Some(p) => glob::matches(p, rel.as_os_str().as_bytes()),
                None => true,
            };
            let mut out = std::io::stdout().lock();
            let mut show = |rel: &Path| {
                let _ = writeln!(out, "squashfs-root/{}", rel.display());
            };
            if let Err(e) = extract::extract(&fs, Path::new("squashfs-root"), &wanted, &mut show) {
                return die(e);
            }
        }
        "extract-and-run" => return run(image, argv0, rest, true),
        "mount" => {
            return match fuse_start(image) {
                Ok(mp) => {
                    println!("{}", mp.display());
                    let _ = std::io::stdout().flush();
                    loop {
                        // SAFETY: pause has no preconditions; a signal ends the process.
                        unsafe { libc::pause() };
                    }
                }
                Err(e) => die(format!("cannot mount: {e}")),
            };
        }
        "portable-home" | "portable-config" => {
            let suffix = if opt == "portable-home" {
                "home"
            } else {
                "config"
            };
            let dir = portable(image, suffix);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return die(format!("cannot create {}: {e}", dir.display()));
            }
            let what = if suffix == "home" { "home" } else { "config" };
            println!("Portable {what} directory created at {}", dir.display());
        }
        _ => {
            return die(format!(
                "unknown option --appimage-{opt} (see --appimage-help)"
            ));
        }
    }
    ExitCode::SUCCESS
}

/// `NAME.AppImage.home` / `.config` beside the AppImage.
fn portable(image: &Image, suffix: &str) -> PathBuf {
    let mut p = image.path.clone().into_os_string();
    p.push(".");
    p.push(suffix);
    PathBuf::from(p)
}

/// Run the application: through FUSE, or from the extraction cache when
/// forced or when FUSE is not usable.
fn run(image: &Image, argv0: &OsStr, args: &[OsString], force_extract: bool) -> ExitCode {
    if !force_extract {
        match fuse_start(image) {
            Ok(mp) => return exec_apprun(image, &mp, argv0, args),
            Err(reason) => {
                let dir = match cache_dir(image) {
                    Ok(d) => d,
                    Err(e) => return die(e),
                };
                eprintln!(
                    "sik-runtime: FUSE not usable ({reason}); running from an extracted copy in {}",
                    dir.display()
                );
            }
        }
    }
    match extracted(image) {
        Ok(dir) => exec_apprun(image, &dir, argv0, args),
        Err(e) => die(e),
    }
}

/// Replace this process by `APPDIR/AppRun` with the AppImage environment.
fn exec_apprun(image: &Image, appdir: &Path, argv0: &OsStr, args: &[OsString]) -> ExitCode {
    let apprun = appdir.join("AppRun");
    let mut cmd = Command::new(&apprun);
    cmd.args(args)
        .env("APPIMAGE", &image.path)
        .env("APPDIR", appdir)
        .env("ARGV0", argv0);
    if let Ok(cwd) = std::env::current_dir() {
        cmd.env("OWD", cwd);
    }
    let home = portable(image, "home");
    if home.is_dir() {
        cmd.env("HOME", &home);
    }
    let config = portable(image, "config");
    if config.is_dir() {
        cmd.env("XDG_CONFIG_HOME", &config);
    }
    let err = cmd.exec();
    die(format!("cannot run {}: {err}", apprun.display()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn temp_base() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Mount the image at a fresh private directory and serve it from a
/// detached process. Returns the mount point; the process unmounts and
/// removes it when every holder of the keep-alive pipe (this process after
/// it became AppRun, and AppRun's children) has exited.
fn fuse_start(image: &Image) -> Result<PathBuf, String> {
    let stem: String = image
        .path
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(8)
                .collect()
        })
        .unwrap_or_default();
    let template = temp_base().join(format!(".mount_{stem}XXXXXX"));
    let mut buf = template.into_os_string().into_vec();
    buf.push(0);
    // SAFETY: buf is a writable NUL-terminated template.
    if unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) }.is_null() {
        return Err(format!(
            "cannot create a mount point: {}",
            std::io::Error::last_os_error()
        ));
    }
    buf.pop();
    let mp = PathBuf::from(OsString::from_vec(buf));
    let result = fuse_serve_detached(image, &mp);
    if result.is_err() {
        let _ = std::fs::remove_dir(&mp);
    }
    result.map(|()| mp)
}

use std::os::unix::ffi::OsStringExt;

fn fuse_serve_detached(image: &Image, mp: &Path) -> Result<(), String> {
    let (ready_r, ready_w) = pipe()?;
    let (keep_r, keep_w) = pipe()?;
    // SAFETY: the process is single-threaded here, so fork is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(ready_r);
        drop(keep_w);
        // Detach: a second fork leaves the server to init, so AppRun never
        // sees it as a child; setsid keeps terminal signals away from it.
        // SAFETY: still single-threaded.
        if unsafe { libc::fork() } != 0 {
            // SAFETY: _exit skips destructors shared with the parent.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: setsid has no preconditions.
        unsafe { libc::setsid() };
        serve(image, mp, ready_w, keep_r);
    }
    drop(ready_w);
    drop(keep_r);
    let mut status = 0;
    // SAFETY: pid is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut answer = String::new();
    let _ = File::from(ready_r).read_to_string(&mut answer);
    if answer == "OK" {
        // AppRun (and its children) inherit the write end; the server ends
        // when the last copy closes.
        // SAFETY: fcntl on a valid descriptor.
        unsafe { libc::fcntl(keep_w.as_raw_fd(), libc::F_SETFD, 0) };
        std::mem::forget(keep_w);
        Ok(())
    } else if answer.is_empty() {
        Err("the FUSE server ended without a word".into())
    } else {
        Err(answer)
    }
}

/// The detached server process: mount, report, serve until the keep-alive
/// pipe closes, unmount, remove the mount point.
fn serve(image: &Image, mp: &Path, ready_w: OwnedFd, keep_r: OwnedFd) -> ! {
    let mut ready = File::from(ready_w);
    let started = (|| -> Result<mount::Mounted, String> {
        let fs = fs::SquashFs::open(&image.path, image.offset)?;
        let fsname = image.path.to_string_lossy().into_owned();
        let (fd, how) = mount::mount(mp, &fsname)?;
        // Several threads take requests, so readahead decompresses in parallel.
        let mut config = fuser::Config::default();
        config.n_threads = Some(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(2, 4),
        );
        let session =
            fuser::Session::from_fd(fs, fd, fuser::SessionACL::Owner, config).map_err(|e| {
                mount::unmount(mp, &how);
                format!("FUSE handshake failed: {e}")
            })?;
        std::thread::Builder::new()
            .name("fuse".into())
            .spawn(move || session.run())
            .map_err(|e| {
                mount::unmount(mp, &how);
                format!("cannot start the FUSE thread: {e}")
            })?;
        Ok(how)
    })();
    let how = match started {
        Ok(h) => h,
        Err(e) => {
            let _ = ready.write_all(e.as_bytes());
            // SAFETY: ends the server process.
            unsafe { libc::_exit(1) };
        }
    };
    let _ = ready.write_all(b"OK");
    drop(ready);
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut keep = File::from(keep_r);
    let mut b = [0u8; 64];
    loop {
        match keep.read(&mut b) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    mount::unmount(mp, &how);
    let _ = std::fs::remove_dir(mp);
    // SAFETY: ends the server process; the session thread dies with it.
    unsafe { libc::_exit(0) }
}

/// Cache directory for this image: `$XDG_CACHE_HOME/sik-appimage/<digest>`.
fn cache_dir(image: &Image) -> Result<PathBuf, String> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            temp_base().join(format!("sik-appimage-cache-{}", unsafe { libc::geteuid() }))
        });
    Ok(base.join("sik-appimage").join(digest(image)?))
}

/// The image's cache key: SHA-256 over the file length, the runtime's
/// reserved sections (update information, signature, key), the SquashFS
/// superblock and the SquashFS tables (inode table to end). The tables hold
/// every entry's size, mode, mtime and the position and compressed size of
/// every data block, so a changed file changes the key without hashing all
/// data (or the runtime's code) on every start.
fn digest(image: &Image) -> Result<String, String> {
    let mut f = File::open(&image.path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    for r in sik_image::elf::RESERVED {
        if let Some(sec) = image.layout.section(r.name) {
            let bytes = sik_image::elf::read_section(&mut f, sec).map_err(|e| e.to_string())?;
            h.update(r.name.as_bytes());
            h.update(&bytes);
        }
    }
    f.seek(SeekFrom::Start(image.offset))
        .map_err(|e| e.to_string())?;
    let mut sb = [0u8; 96];
    f.read_exact(&mut sb)
        .map_err(|e| format!("no SquashFS superblock: {e}"))?;
    h.update(sb);
    if &sb[0..4] != b"hsqs" {
        return Err("no SquashFS after the runtime".into());
    }
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let bytes_used = u64_at(40);
    let inode_table = u64_at(64);
    if inode_table < bytes_used && image.offset + bytes_used <= len {
        f.seek(SeekFrom::Start(image.offset + inode_table))
            .map_err(|e| e.to_string())?;
        let mut rest = (&mut f).take(bytes_used - inode_table);
        std::io::copy(&mut rest, &mut h).map_err(|e| e.to_string())?;
    } else {
        return Err("SquashFS superblock points beyond the file".into());
    }
    let d = h.finalize();
    Ok(d[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// The extracted copy of the image, made on first use and reused after.
fn extracted(image: &Image) -> Result<PathBuf, String> {
    let dir = cache_dir(image)?;
    if std::fs::symlink_metadata(dir.join("AppRun")).is_ok() {
        return Ok(dir);
    }
    let parent = dir.parent().ok_or("bad cache directory")?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let fs = extract::open(&image.path, image.offset)?;
    let res = extract::extract(&fs, &tmp, &|_| true, &mut |_| {});
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Rename into place only when complete; another start may have won the race.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if std::fs::symlink_metadata(dir.join("AppRun")).is_err() {
            return Err(format!(
                "cannot move the extracted copy to {}",
                dir.display()
            ));
        }
    }
    Ok(dir)
}
