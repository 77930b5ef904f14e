//! `sik-runtime`: the AppImage type 2 runtime of SystemImageKit.
//!
//! It is the ELF at the start of every AppImage `sik create appimage` writes;
//! the SquashFS holding the AppDir follows it directly. At start it mounts
//! that SquashFS read-only with FUSE and runs `AppRun`; where FUSE is not
//! usable it extracts the SquashFS once into a cache directory keyed by the
//! image's digest and runs from there. It reads every SquashFS compression
//! (gzip, xz, lz4, zstd, lzo, lzma) through sik-image's reader; it is built
//! static for musl (see `crates/sik-appimage/build.rs`) to stay small.
//!
//! ```text
//! ./App-1.0-x86_64.AppImage --appimage-offset
//! ./App-1.0-x86_64.AppImage --appimage-extract 'usr/share/*'
//! APPIMAGE_EXTRACT_AND_RUN=1 ./App-1.0-x86_64.AppImage args…
//! ```

mod cache;
mod extract;
mod fs;
mod glob;
mod mount;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

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
    /// The file, opened once: hashed and extracted from this descriptor.
    file: File,
    /// Its metadata when opened (the cache index key).
    meta: std::fs::Metadata,
    /// SquashFS offset (end of the ELF).
    offset: u64,
    layout: sik_image_lean::elf::ElfLayout,
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
        sik_image_lean::elf::read_layout(&mut f).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Image {
        offset: layout.end,
        path,
        file: f,
        meta,
        layout,
    })
}

fn help() {
    println!(
        "AppImage runtime of SystemImageKit {VERSION}

Usage: APPIMAGE [--appimage-OPTION] [ARGUMENTS…]

Without an --appimage- option the AppImage runs its application with ARGUMENTS.
It mounts its SquashFS with FUSE; where FUSE is not usable it extracts it once
into a private cache (the first safe one of $XDG_CACHE_HOME, $HOME/.cache and
$XDG_RUNTIME_DIR, in sik-appimage/, else a fresh directory in $TMPDIR removed
after the run) and runs from there.

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
TMPDIR, FUSERMOUNT_PROG (mount helper to use), XDG_CACHE_HOME, HOME, XDG_RUNTIME_DIR."
    );
}

fn section_text(image: &Image, name: &str) -> Result<String, String> {
    let Some(sec) = image.layout.section(name) else {
        return Ok(String::new());
    };
    let mut f = File::open(&image.path).map_err(|e| e.to_string())?;
    let bytes = sik_image_lean::elf::read_section(&mut f, sec).map_err(|e| e.to_string())?;
    Ok(sik_image_lean::elf::nul_padded_text(&bytes).unwrap_or_default())
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
            let fs = match extract::open(&image.file, &image.path, image.offset) {
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
    let mut fuse_failed = None;
    if !force_extract {
        match fuse_start(image) {
            Ok(mp) => return exec_apprun(image, &mp, argv0, args),
            Err(reason) => fuse_failed = Some(reason),
        }
    }
    match extracted(image) {
        Ok(dir) => {
            if let Some(reason) = fuse_failed {
                eprintln!(
                    "sik-runtime: FUSE not usable ({reason}); running from an extracted copy in {}",
                    dir.display()
                );
            }
            exec_apprun(image, &dir, argv0, args)
        }
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

/// The extracted copy of the image (`cache`): found through the index on a
/// warm start without reading the file, else hashed and extracted from the
/// open descriptor, checked not to have changed meanwhile, and recorded.
fn extracted(image: &Image) -> Result<PathBuf, String> {
    let place = cache::place()?;
    if place.temporary {
        cache::remove_when_done(&place.dir)?;
    } else if let Some(dir) = cache::lookup(&place, &image.meta)? {
        return Ok(dir);
    }
    let unchanged = |what: &str| -> Result<(), String> {
        let now = image
            .file
            .metadata()
            .map_err(|e| format!("{}: {e}", image.path.display()))?;
        if cache::identity(&now) == cache::identity(&image.meta) {
            Ok(())
        } else {
            Err(format!(
                "{} changed while it was {what}",
                image.path.display()
            ))
        }
    };
    let digest = cache::digest(&image.file)
        .map_err(|e| format!("cannot read {}: {e}", image.path.display()))?;
    unchanged("read")?;
    let dir = cache::get_or_make(&place, &digest, &|tmp| {
        let fs = extract::open(&image.file, &image.path, image.offset)?;
        extract::extract(&fs, tmp, &|_| true, &mut |_| {})?;
        unchanged("extracted")
    })?;
    if !place.temporary {
        cache::remember(&place, &image.meta, &digest);
    }
    Ok(dir)
}
