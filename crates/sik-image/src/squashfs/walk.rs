//! The tree of a SquashFS image, walked in path order with memory bounded
//! by the largest directory and the depth, not by the image.
//!
//! Entries come in the byte order of their full paths (the order
//! `unsquashfs -lln` and a sorted listing show): a directory's entry comes
//! where its name sorts, its contents where `name/` sorts among its
//! siblings (so `a`, `a-x`, `a/b`). Each directory is entered once: one
//! reached a second time (a loop, or a directory linked twice) is an error,
//! as is an entry whose type differs from its inode's.

use std::collections::HashSet;

use super::tables::{DirEntry, Image, Inode, InodeKind, MetaCache, Source};
use crate::Error;

/// One step of a directory's walk: an entry to visit, or a directory to enter.
struct Item {
    key: Vec<u8>,
    entry: DirEntry,
    enter: bool,
}

/// A directory being walked.
struct Frame {
    items: Vec<Item>,
    next: usize,
}

fn frame(entries: Vec<DirEntry>) -> Frame {
    let mut items = Vec::with_capacity(entries.len() + entries.len() / 4);
    for e in entries {
        let key = String::from_utf8_lossy(&e.name).into_owned().into_bytes();
        if e.kind == 1 {
            let mut k = key.clone();
            k.push(b'/');
            items.push(Item {
                key: k,
                entry: e.clone(),
                enter: true,
            });
        }
        items.push(Item {
            key,
            entry: e,
            enter: false,
        });
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Frame { items, next: 0 }
}

fn bad(why: impl Into<String>) -> Error {
    Error::malformed("squashfs", why)
}

/// What [`walk`] calls for each entry: its path components (none for the
/// root), its inode and the inode's reference.
pub type Visit<'a, E> = dyn FnMut(&[Vec<u8>], &Inode, u64) -> Result<(), E> + 'a;

/// Walk the tree of `image`, calling `visit` with the path components
/// (none for the root), the inode and its reference, parents before their
/// contents, in full-path byte order.
pub fn walk<S: Source, E: From<Error>>(
    image: &Image<S>,
    cache: &mut MetaCache,
    visit: &mut Visit<'_, E>,
) -> Result<(), E> {
    let root_ref = image.layout.root_inode;
    let root = image.inode(cache, root_ref)?;
    let InodeKind::Dir(dir) = &root.kind else {
        return Err(bad("the root inode is not a directory").into());
    };
    let mut entered: HashSet<u64> = HashSet::from([root_ref]);
    visit(&[], &root, root_ref)?;
    let mut stack = vec![frame(image.read_dir(cache, dir)?)];
    let mut path: Vec<Vec<u8>> = Vec::new();
    while let Some(top) = stack.last_mut() {
        let Some(item) = top.items.get_mut(top.next) else {
            stack.pop();
            path.pop();
            continue;
        };
        top.next += 1;
        let name = std::mem::take(&mut item.entry.name);
        let (reference, kind, enter) = (item.entry.inode, item.entry.kind, item.enter);
        let inode = image.inode(cache, reference)?;
        if inode.kind.basic_type() != kind {
            return Err(bad(format!(
                "entry {} says type {kind}, its inode is type {}",
                String::from_utf8_lossy(&name).escape_debug(),
                inode.kind.basic_type()
            ))
            .into());
        }
        path.push(name);
        if !enter {
            visit(&path, &inode, reference)?;
            path.pop();
            continue;
        }
        let InodeKind::Dir(dir) = &inode.kind else {
            unreachable!("the type was checked above");
        };
        if !entered.insert(reference) {
            return Err(bad(format!(
                "directory {} is reached twice (a directory loop or a bad reference)",
                String::from_utf8_lossy(&path.join(&b'/')).escape_debug()
            ))
            .into());
        }
        let entries = image.read_dir(cache, dir)?;
        stack.push(frame(entries));
    }
    Ok(())
}
