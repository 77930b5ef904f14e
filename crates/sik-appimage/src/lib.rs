//! AppImage toolchain of SystemImageKit: checks an AppDir, packs it into a
//! SquashFS behind the project's own static runtime (carried inside this
//! crate, so packing needs no network and no extra file), writes the update
//! information into the runtime's `.upd_info` section and, on request, a
//! zsync control file.
//!
//! * [`appdir`]: AppDir checks (AppRun, the one desktop file, icon,
//!   `.DirIcon`, AppStream metainfo), naming every problem at once.
//! * [`desktop`]: the `[Desktop Entry]` group of a desktop file.
//! * [`updinfo`]: update information transports.
//! * [`zsync`]: zsync 0.6.2 control files.
//! * [`Runtime`], [`pack`]: assembling runtime + SquashFS.
//! * [`integrate`]: desktop entries, icons and MIME packages of AppImages
//!   in an XDG data directory.
//!
//! ```no_run
//! use sik_appimage::{pack, PackOptions};
//! let report = pack(&PackOptions::new("Hello.AppDir".into())).unwrap();
//! println!("wrote {}", report.output.display());
//! ```

#![forbid(unsafe_code)]

pub mod appdir;
mod contents;
pub mod integrate;
/// Desktop entries are format knowledge shared with `sik inspect`; they live in sik-image.
pub use sik_image::desktop;
mod error;
pub mod updinfo;
pub mod zsync;

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sik_create::squashfs::{Compressor, SquashfsWriter, WriterOptions};
use sik_image::elf::{self, ElfLayout};

pub use error::{Error, Result};
pub use updinfo::UpdateInfo;

/// The runtime built from `crates/sik-runtime` for this target (static,
/// already marked `AI\x02`).
pub static EMBEDDED_RUNTIME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sik-runtime"));

pub use sik_image::elf::appimage_arch;

/// An AppImage runtime: an ELF with the reserved type 2 sections.
#[derive(Debug, Clone)]
pub struct Runtime {
    bytes: Vec<u8>,
    layout: ElfLayout,
}

impl Runtime {
    /// The runtime embedded in this crate.
    pub fn embedded() -> Result<Runtime> {
        Runtime::from_bytes(EMBEDDED_RUNTIME.to_vec())
    }

    /// Use `bytes` (another runtime, e.g. the reference one). Bytes after
    /// the ELF's end are dropped; bytes 8..11 are set to `AI\x02`.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Runtime> {
        let layout = elf::read_layout(&mut std::io::Cursor::new(&bytes))
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let end = usize::try_from(layout.end).map_err(|_| Error::Runtime("too large".into()))?;
        bytes.truncate(end);
        if bytes.len() < 16 {
            return Err(Error::Runtime("too short".into()));
        }
        bytes[8..11].copy_from_slice(b"AI\x02");
        Ok(Runtime { bytes, layout })
    }

    /// The ELF bytes; the SquashFS goes right after them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The ELF layout (sections, machine, end).
    pub fn layout(&self) -> &ElfLayout {
        &self.layout
    }

    /// Write NUL-padded `text` into the reserved section `name`.
    pub fn set_section(&mut self, name: &str, text: &[u8]) -> Result<()> {
        let reserved = elf::RESERVED
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::Runtime(format!("{name} is not a reserved AppImage section")))?;
        let sec = self
            .layout
            .reserved(*reserved)
            .map_err(|e| Error::Runtime(e.to_string()))?
            .ok_or_else(|| Error::Runtime(format!("has no {name} section")))?;
        let (off, size) = (sec.offset as usize, sec.size as usize);
        if text.len() >= size {
            return Err(Error::Runtime(format!(
                "{name} holds {} bytes, {} given",
                size - 1,
                text.len()
            )));
        }
        let area = &mut self.bytes[off..off + size];
        area.fill(0);
        area[..text.len()].copy_from_slice(text);
        Ok(())
    }
}

/// What `pack` does.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The AppDir.
    pub appdir: PathBuf,
    /// Output file (default: `Name-VERSION-ARCH.AppImage` in the current directory).
    pub output: Option<PathBuf>,
    /// Runtime file to use instead of the embedded one.
    pub runtime: Option<PathBuf>,
    /// Update information for `.upd_info`.
    pub update_info: Option<String>,
    /// Also write `OUTPUT.zsync`.
    pub zsync: bool,
    /// SquashFS compressor.
    pub compressor: Compressor,
    /// Globs (relative to the AppDir) of paths to leave out.
    pub exclude: Vec<String>,
}

impl PackOptions {
    /// Defaults for `appdir`: zstd, embedded runtime, no update information.
    pub fn new(appdir: PathBuf) -> Self {
        PackOptions {
            appdir,
            output: None,
            runtime: None,
            update_info: None,
            zsync: false,
            compressor: Compressor::Zstd,
            exclude: Vec::new(),
        }
    }
}

/// What `pack` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackReport {
    /// The AppImage written.
    pub output: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Offset of the SquashFS (end of the runtime).
    pub offset: u64,
    /// Architecture in the file name.
    pub arch: String,
    /// The zsync control file written, if any.
    pub zsync: Option<PathBuf>,
    /// `.DirIcon` was missing and created as a symlink to this icon.
    pub dir_icon_created: Option<PathBuf>,
    /// Things worth telling that did not stop packing.
    pub warnings: Vec<String>,
}

fn default_name(name: &str, version: Option<&str>, arch: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_whitespace() || c == '/' {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    match version.filter(|v| !v.is_empty()) {
        Some(v) => format!("{}-{}-{arch}.AppImage", clean(name), clean(v)),
        None => format!("{}-{arch}.AppImage", clean(name)),
    }
}

/// Check the AppDir and write the AppImage (atomically, executable).
pub fn pack(opts: &PackOptions) -> Result<PackReport> {
    let update = opts
        .update_info
        .as_deref()
        .map(UpdateInfo::parse)
        .transpose()?;
    let report = appdir::check(&opts.appdir);
    if !report.problems.is_empty() {
        return Err(Error::AppDir(report.problems));
    }
    let mut warnings = Vec::new();
    let mut runtime = match &opts.runtime {
        Some(p) => Runtime::from_bytes(std::fs::read(p).map_err(|e| Error::io(p, e))?)?,
        None => Runtime::embedded()?,
    };
    if let Some(u) = &opts.update_info {
        runtime.set_section(elf::UPD_INFO.name, u.as_bytes())?;
    }
    let _ = update;
    // Architecture of the main executable, else of the runtime.
    let arch_machine = appdir::main_executable(&opts.appdir, report.desktop.as_ref())
        .and_then(|rel| {
            let mut f = File::open(opts.appdir.join(rel)).ok()?;
            elf::read_layout(&mut f).ok().map(|l| l.machine)
        })
        .unwrap_or(runtime.layout.machine);
    if arch_machine != runtime.layout.machine {
        warnings.push(format!(
            "the main executable is for {} but the runtime for {}",
            appimage_arch(arch_machine).unwrap_or("unknown"),
            appimage_arch(runtime.layout.machine).unwrap_or("unknown")
        ));
    }
    let arch = appimage_arch(arch_machine).unwrap_or("unknown").to_string();
    let output = match &opts.output {
        Some(o) => o.clone(),
        None => {
            let d = report.desktop.as_ref();
            let name = d.and_then(|d| d.name()).unwrap_or("App");
            PathBuf::from(default_name(name, d.and_then(|d| d.version()), &arch))
        }
    };
    let mut dir_icon_created = None;
    if report.dir_icon_missing
        && let Some(icon) = &report.icon
    {
        appdir::create_dir_icon(&opts.appdir, icon)
            .map_err(|e| Error::io(opts.appdir.join(".DirIcon"), e))?;
        dir_icon_created = Some(icon.clone());
    }
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The SquashFS goes to a temporary file first (the writer owns its file
    // from offset 0), then runtime + SquashFS are joined into the output.
    let sqfs_tmp = tempfile::Builder::new()
        .prefix(".sik-appimage-")
        .tempfile_in(&out_dir)
        .map_err(|e| Error::io(&out_dir, e))?;
    let sqfs_file = sqfs_tmp
        .reopen()
        .map_err(|e| Error::io(sqfs_tmp.path(), e))?;
    // SOURCE_DATE_EPOCH, else the AppDir's own mtime (the ExtensionImage rule):
    // the same AppDir gives the same image.
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or_else(|| {
            std::fs::metadata(&opts.appdir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
                .unwrap_or(0)
        });
    let wopts = WriterOptions {
        compressor: opts.compressor,
        level: None,
        block_size: 128 * 1024,
        mod_time: mtime,
        threads: 0,
    };
    let mut w = SquashfsWriter::new(sqfs_file, wopts).map_err(|e| Error::Create(e.to_string()))?;
    // The same directory walk as ExtensionImages: sorted, owners 0:0,
    // symlinks, hard links, modes, mtimes and xattrs kept.
    let source = sik_create::source::SourceOptions {
        keep_owner: false,
        exclude: opts.exclude.clone(),
        before_open: None,
    };
    sik_create::add_directory(&mut w, &opts.appdir, &source, &sik_create::NoProgress).map_err(
        |e| match e {
            sik_create::Error::Usage(why) => Error::Usage(why),
            other => Error::Create(other.to_string()),
        },
    )?;
    w.finish().map_err(|e| Error::Create(e.to_string()))?;

    let mut out_tmp = tempfile::Builder::new()
        .prefix(".sik-appimage-")
        .tempfile_in(&out_dir)
        .map_err(|e| Error::io(&out_dir, e))?;
    {
        let f = out_tmp.as_file_mut();
        f.write_all(runtime.bytes())
            .map_err(|e| Error::io(&output, e))?;
        let mut src =
            BufReader::new(File::open(sqfs_tmp.path()).map_err(|e| Error::io(sqfs_tmp.path(), e))?);
        std::io::copy(&mut src, f).map_err(|e| Error::io(&output, e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(&output, e))?;
        f.sync_all().map_err(|e| Error::io(&output, e))?;
    }
    drop(sqfs_tmp);
    let size = out_tmp
        .as_file()
        .metadata()
        .map_err(|e| Error::io(&output, e))?
        .len();
    out_tmp
        .persist(&output)
        .map_err(|e| Error::io(&output, e.error))?;
    let zsync = if opts.zsync {
        Some(write_zsync(&output)?)
    } else {
        None
    };
    Ok(PackReport {
        output,
        size,
        offset: runtime.layout.end,
        arch,
        zsync,
        dir_icon_created,
        warnings,
    })
}

/// Write `IMAGE.zsync` beside `image` (atomically), for an updater that
/// fetches the image from the same directory as the control file. Call it
/// after the image is final (signed). Returns the control file's path.
pub fn write_zsync(image: &Path) -> Result<PathBuf> {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let zpath = PathBuf::from(format!("{}.zsync", image.display()));
    let dir = match image.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let f = File::open(image).map_err(|e| Error::io(image, e))?;
    let md = f.metadata().map_err(|e| Error::io(image, e))?;
    // The file's own modification time, as zsyncmake records it.
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut ztmp = tempfile::Builder::new()
        .prefix(".sik-appimage-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    zsync::write_control(
        BufReader::new(f),
        md.len(),
        &name,
        &name,
        mtime,
        ztmp.as_file_mut(),
    )
    .map_err(|e| Error::io(&zpath, e))?;
    ztmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(&zpath, e))?;
    ztmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(&zpath, e))?;
    ztmp.persist(&zpath)
        .map_err(|e| Error::io(&zpath, e.error))?;
    Ok(zpath)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_runtime_is_type2() {
        let rt = Runtime::embedded().unwrap();
        assert_eq!(&rt.bytes()[8..11], b"AI\x02");
        for r in elf::RESERVED {
            let s = rt
                .layout()
                .section(r.name)
                .unwrap_or_else(|| panic!("{} missing", r.name));
            assert_eq!(s.size, r.size, "{}", r.name);
            let bytes = &rt.bytes()[s.offset as usize..(s.offset + s.size) as usize];
            assert!(bytes.iter().all(|&b| b == 0), "{} not zero", r.name);
        }
        assert_eq!(rt.layout().end as usize, rt.bytes().len());
    }

    #[test]
    fn update_info_goes_into_section() {
        let mut rt = Runtime::embedded().unwrap();
        rt.set_section(".upd_info", b"zsync|https://x.org/a.zsync")
            .unwrap();
        let s = rt.layout().section(".upd_info").unwrap().clone();
        let bytes = elf::read_section(&mut std::io::Cursor::new(rt.bytes()), &s).unwrap();
        assert_eq!(
            elf::nul_padded_text(&bytes).as_deref(),
            Some("zsync|https://x.org/a.zsync")
        );
        assert!(rt.set_section(".upd_info", &[b'x'; 1024]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            default_name("My App", Some("1.0"), "x86_64"),
            "My_App-1.0-x86_64.AppImage"
        );
        assert_eq!(default_name("App", None, "aarch64"), "App-aarch64.AppImage");
    }
}
