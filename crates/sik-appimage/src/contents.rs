//! What desktop integration takes from inside a type 2 AppImage: the
//! desktop file at the root of its SquashFS, the icons of its `Icon=` name
//! (hicolor theme, the root, `.DirIcon`) and its shared-mime-info packages.
//! Everything is read from the descriptor that was verified, through
//! `sik-image`'s streaming reader, with bounded counts and sizes; symbolic
//! links are followed inside the image only.

use std::fs::File;

use sik_image::squashfs::{DataBuffers, FileData, FragmentCache, Image, Inode, InodeKind};

/// Largest desktop file read.
const MAX_DESKTOP: u64 = 256 << 10;
/// Largest icon copied.
const MAX_ICON: u64 = 8 << 20;
/// Most icons copied for one AppImage.
const MAX_ICONS: usize = 64;
/// Largest MIME package copied.
const MAX_MIME: u64 = 1 << 20;
/// Most MIME packages copied for one AppImage.
const MAX_MIMES: usize = 16;
/// Symbolic links followed for one path.
const MAX_LINKS: usize = 8;

/// The files integration needs from an AppImage.
#[derive(Debug, Clone)]
pub(crate) struct Contents {
    /// Name of the desktop file at the root.
    pub desktop_name: String,
    /// Its text.
    pub desktop: String,
    /// Icons: hicolor size directory (`48x48`, `scalable`), extension, bytes.
    pub icons: Vec<(String, String, Vec<u8>)>,
    /// MIME packages: file name (`*.xml`), bytes.
    pub mimes: Vec<(String, Vec<u8>)>,
}

/// The standard hicolor sizes a root icon is filed under.
const SIZES: [u32; 12] = [16, 22, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

struct Reader {
    img: Image<File>,
    cache: sik_image::squashfs::MetaCache,
}

impl Reader {
    fn root(&mut self) -> Result<Inode, String> {
        let r = self.img.layout.root_inode;
        self.img
            .inode(&mut self.cache, r)
            .map_err(|e| e.to_string())
    }

    /// The entries of a directory inode (name, inode).
    fn list(&mut self, dir: &Inode) -> Result<Vec<(String, Inode)>, String> {
        let InodeKind::Dir(d) = &dir.kind else {
            return Ok(Vec::new());
        };
        let entries = self
            .img
            .read_dir(&mut self.cache, d)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Ok(name) = String::from_utf8(e.name) else {
                continue;
            };
            let inode = self
                .img
                .inode(&mut self.cache, e.inode)
                .map_err(|e| e.to_string())?;
            out.push((name, inode));
        }
        Ok(out)
    }

    /// The inode at `path` (relative to the root, `/`-separated), symbolic
    /// links followed inside the image (`..` stops at the root).
    fn lookup(&mut self, path: &str) -> Result<Option<Inode>, String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut stack: Vec<Inode> = vec![self.root()?];
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = stack.last().cloned().unwrap_or(self.root()?);
            let Some((_, inode)) = self.list(&dir)?.into_iter().find(|(n, _)| *n == c) else {
                return Ok(None);
            };
            if let InodeKind::Symlink(target) = &inode.kind {
                links += 1;
                if links > MAX_LINKS {
                    return Ok(None);
                }
                let target = String::from_utf8_lossy(target).into_owned();
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                for part in target.split('/').filter(|p| !p.is_empty()).rev() {
                    todo.push(part.to_string());
                }
                continue;
            }
            stack.push(inode);
        }
        Ok(stack.pop())
    }

    /// The bytes of a regular file, at most `limit`.
    fn read(&self, file: &FileData, limit: u64) -> Result<Option<Vec<u8>>, String> {
        if file.size > limit {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(file.size as usize);
        self.img
            .read_file(
                file,
                &mut DataBuffers::new(&self.img),
                &FragmentCache::default(),
                &mut |b| {
                    out.extend_from_slice(b);
                    Ok(())
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(Some(out))
    }

    /// The bytes of the regular file at `path` (links followed), if it
    /// exists and is at most `limit` bytes.
    fn read_path(&mut self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        match self.lookup(path)? {
            Some(Inode {
                kind: InodeKind::File(f),
                ..
            }) => self.read(&f, limit),
            _ => Ok(None),
        }
    }
}

/// Whether `s` is a plain name integration may use in a file name: ASCII
/// letters, digits, `.`, `_`, `-`, `+`, not starting with `.`, at most 128.
pub(crate) fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// Read what integration needs from the AppImage open as `file`, whose
/// SquashFS starts at `offset`.
pub(crate) fn read(file: File, offset: u64) -> Result<Contents, String> {
    let img = Image::open(file, offset).map_err(|e| format!("SquashFS: {e}"))?;
    let cache = img.meta_cache();
    let mut r = Reader { img, cache };
    let root = r.root()?;
    let mut desktop = None;
    for (name, inode) in r.list(&root)? {
        if !name.ends_with(".desktop") {
            continue;
        }
        if let InodeKind::File(f) = &inode.kind {
            let bytes = r
                .read(f, MAX_DESKTOP)?
                .ok_or_else(|| format!("{name} is larger than {MAX_DESKTOP} bytes"))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))?;
            desktop = Some((name, text));
            break;
        }
    }
    let (desktop_name, desktop) =
        desktop.ok_or("no desktop file (*.desktop) at the root of the AppImage")?;
    let (entry, _) = sik_image::desktop::DesktopEntry::parse(&desktop);
    let mut icons = Vec::new();
    if let Some(icon) = entry.icon().filter(|i| plain_name(i)) {
        // The hicolor theme inside the AppImage.
        if let Some(hicolor) = r.lookup("usr/share/icons/hicolor")? {
            for (size, _) in r.list(&hicolor)? {
                if !valid_size_dir(&size) {
                    continue;
                }
                for ext in ["png", "svg", "svgz", "xpm"] {
                    if icons.len() >= MAX_ICONS {
                        break;
                    }
                    let p = format!("usr/share/icons/hicolor/{size}/apps/{icon}.{ext}");
                    if let Some(bytes) = r.read_path(&p, MAX_ICON)? {
                        icons.push((size.clone(), ext.to_string(), bytes));
                    }
                }
            }
        }
        // The root icon (and `.DirIcon`), filed by its own size.
        if icons.is_empty() {
            let mut found = None;
            for ext in ["png", "svg", "svgz", "xpm"] {
                if let Some(bytes) = r.read_path(&format!("{icon}.{ext}"), MAX_ICON)? {
                    found = Some((ext.to_string(), bytes));
                    break;
                }
            }
            if found.is_none()
                && let Some(bytes) = r.read_path(".DirIcon", MAX_ICON)?
            {
                let ext = if bytes.starts_with(b"\x89PNG") {
                    "png"
                } else {
                    "svg"
                };
                found = Some((ext.to_string(), bytes));
            }
            if let Some((ext, bytes)) = found {
                let size = match ext.as_str() {
                    "svg" | "svgz" => "scalable".to_string(),
                    _ => {
                        let n = png_width(&bytes).unwrap_or(48);
                        let s = SIZES
                            .iter()
                            .min_by_key(|s| s.abs_diff(n))
                            .copied()
                            .unwrap_or(48);
                        format!("{s}x{s}")
                    }
                };
                icons.push((size, ext, bytes));
            }
        }
    }
    let mut mimes = Vec::new();
    if let Some(dir) = r.lookup("usr/share/mime/packages")? {
        for (name, _) in r.list(&dir)? {
            if mimes.len() >= MAX_MIMES {
                break;
            }
            let Some(stem) = name.strip_suffix(".xml") else {
                continue;
            };
            if !plain_name(stem) {
                continue;
            }
            if let Some(bytes) =
                r.read_path(&format!("usr/share/mime/packages/{name}"), MAX_MIME)?
            {
                mimes.push((name, bytes));
            }
        }
    }
    Ok(Contents {
        desktop_name,
        desktop,
        icons,
        mimes,
    })
}

/// `NxN`, `NxN@S`, `scalable` or `symbolic`.
fn valid_size_dir(s: &str) -> bool {
    if s == "scalable" || s == "symbolic" {
        return true;
    }
    let (dims, scale) = s.split_once('@').unwrap_or((s, "1"));
    let num = |x: &str| !x.is_empty() && x.len() <= 5 && x.bytes().all(|b| b.is_ascii_digit());
    dims.split_once('x')
        .is_some_and(|(w, h)| num(w) && num(h) && num(scale))
}

/// The width of a PNG image from its IHDR chunk.
fn png_width(b: &[u8]) -> Option<u32> {
    if b.len() < 24 || !b.starts_with(b"\x89PNG\r\n\x1a\n") || &b[12..16] != b"IHDR" {
        return None;
    }
    Some(u32::from_be_bytes(b[16..20].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert!(plain_name("org.example.App") && plain_name("gtk+-2"));
        assert!(!plain_name("../x") && !plain_name(".hidden") && !plain_name("a b"));
        assert!(
            valid_size_dir("48x48") && valid_size_dir("256x256@2") && valid_size_dir("scalable")
        );
        assert!(!valid_size_dir("..") && !valid_size_dir("48") && !valid_size_dir("x48"));
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&100u32.to_be_bytes());
        png.extend_from_slice(&100u32.to_be_bytes());
        assert_eq!(png_width(&png), Some(100));
    }
}
