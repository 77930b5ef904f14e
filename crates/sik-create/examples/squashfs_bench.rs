//! Writes a directory tree into a SquashFS image with the writer alone (no
//! extension metadata), for timing against `mksquashfs`:
//!
//! ```text
//! cargo run --release -p sik-create --example squashfs_bench -- DIR OUT [zstd|gzip|xz|lz4] [LEVEL] [BLOCK] [THREADS]
//! ```

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use sik_create::squashfs::{Compressor, Meta, SquashfsWriter, WriterOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err(
            "usage: squashfs_bench DIR OUT [zstd|gzip|xz|lz4] [LEVEL] [BLOCK] [THREADS]".into(),
        );
    }
    let compressor = match args.get(3).map(String::as_str) {
        None | Some("zstd") => Compressor::Zstd,
        Some("gzip") => Compressor::Gzip,
        Some("xz") => Compressor::Xz,
        Some("lz4") => Compressor::Lz4,
        Some(other) => return Err(format!("unknown compressor {other}").into()),
    };
    let level = args.get(4).map(|s| s.parse()).transpose()?;
    let block_size = args
        .get(5)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(128 * 1024);
    let threads = args.get(6).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let root = std::path::PathBuf::from(&args[1]);
    let out = std::fs::File::create(&args[2])?;
    let opts = WriterOptions {
        compressor,
        level,
        block_size,
        mod_time: 0,
        threads,
    };
    let start = std::time::Instant::now();
    let mut w = SquashfsWriter::new(out, opts)?;
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry?;
        let md = entry.metadata()?;
        let meta = Meta {
            mode: (md.mode() & 0o7777) as u16,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime().clamp(0, i64::from(u32::MAX)) as u32,
            xattrs: Vec::new(),
        };
        let rel = entry
            .path()
            .strip_prefix(&root)?
            .as_os_str()
            .as_bytes()
            .to_vec();
        if rel.is_empty() {
            w.set_root(meta);
            continue;
        }
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                w.add_hardlink(&rel, first)?;
                continue;
            }
            inodes.insert((md.dev(), md.ino()), rel.clone());
        }
        if ft.is_dir() {
            w.add_dir(&rel, meta)?;
        } else if ft.is_file() {
            let mut f = std::fs::File::open(entry.path())?;
            w.add_file(&rel, meta, &mut f)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(entry.path())?;
            w.add_symlink(&rel, t.as_os_str().as_bytes(), meta)?;
        } else if ft.is_fifo() {
            w.add_fifo(&rel, meta)?;
        } else if ft.is_socket() {
            w.add_socket(&rel, meta)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let r = md.rdev();
            let major = (((r >> 8) & 0xfff) | ((r >> 32) & !0xfff)) as u32;
            let minor = ((r & 0xff) | ((r >> 12) & !0xff)) as u32;
            if ft.is_char_device() {
                w.add_char_device(&rel, meta, major, minor)?;
            } else {
                w.add_block_device(&rel, meta, major, minor)?;
            }
        }
    }
    let added = start.elapsed();
    let s = w.finish()?;
    println!("{s:?}");
    println!(
        "add {:.2}s, finish {:.2}s",
        added.as_secs_f64(),
        (start.elapsed() - added).as_secs_f64()
    );
    Ok(())
}
