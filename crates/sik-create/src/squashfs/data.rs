//! File data: a regular file's content is cut into blocks that go through
//! the compression pipeline, its tail into a fragment shared with other
//! small files; identical files (same size and XXH3-128) share their blocks
//! or fragment, and all-zero blocks are stored as sparse.

use std::io::Read;

use super::{SPARSE, SquashfsWriter, WriteError};

/// Content of a regular file: where its blocks and tail are.
#[derive(Debug, Clone)]
pub(super) struct FileData {
    pub(super) size: u64,
    /// Per block: the pipeline sequence number, or [`SPARSE`].
    pub(super) blocks: Vec<u64>,
    /// (fragment index, offset) of the tail when the file is in a fragment.
    pub(super) fragment: Option<(u32, u32)>,
    /// Bytes in sparse blocks.
    pub(super) sparse: u64,
}

/// Appends up to `len` bytes from `r` to `buf`, stopping early only at the
/// end of the reader.
fn read_block(r: &mut dyn Read, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    r.take(len as u64).read_to_end(buf)?;
    Ok(())
}

impl SquashfsWriter {
    /// Streams a file's content into the image; returns its [`FileData`] index.
    pub(super) fn write_data(&mut self, data: &mut dyn Read) -> Result<u32, WriteError> {
        let bs = self.opts.block_size as usize;
        // The first block goes to a reused buffer: most files are small and
        // only need copying into the fragment block.
        let mut first = std::mem::take(&mut self.scratch);
        first.clear();
        first.reserve_exact(bs);
        read_block(data, &mut first, bs)?;
        if first.len() < bs {
            let result = self.write_small(&first);
            self.scratch = first;
            return result;
        }
        let start_seq = self.pipeline.next_seq();
        let result = self.write_large(first, data);
        match result {
            Ok(id) => Ok(id),
            Err(e) => {
                // Drop what was queued for the failed file; the image stays
                // consistent for the entries added so far.
                let end = self.pipeline.next_seq();
                let _ = self.pipeline.discard(start_seq..end);
                Err(e)
            }
        }
    }

    fn new_file(&mut self, fd: FileData) -> Result<u32, WriteError> {
        let id = u32::try_from(self.files.len())
            .map_err(|_| WriteError::TooLarge("too many files".into()))?;
        self.files.push(fd);
        Ok(id)
    }

    /// A file smaller than one block: its content goes into a fragment
    /// block (shared with identical earlier small files).
    fn write_small(&mut self, content: &[u8]) -> Result<u32, WriteError> {
        let size = content.len() as u64;
        if size == 0 {
            return self.new_file(FileData {
                size,
                blocks: Vec::new(),
                fragment: None,
                sparse: 0,
            });
        }
        let key = (size, xxhash_rust::xxh3::xxh3_128(content));
        let fragment = match self.small_dups.get(&key) {
            Some(&f) => {
                self.duplicate_files += 1;
                f
            }
            None => {
                let f = self.add_fragment(content)?;
                self.small_dups.insert(key, f);
                f
            }
        };
        self.new_file(FileData {
            size,
            blocks: Vec::new(),
            fragment: Some(fragment),
            sparse: 0,
        })
    }

    fn add_fragment(&mut self, content: &[u8]) -> Result<(u32, u32), WriteError> {
        let bs = self.opts.block_size as usize;
        if self.frag_buf.len() + content.len() > bs {
            self.flush_fragment()?;
        }
        if self.frag_buf.capacity() == 0 {
            self.frag_buf.reserve_exact(bs);
        }
        let index = u32::try_from(self.frag_seqs.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or_else(|| WriteError::TooLarge("too many fragments".into()))?;
        let offset = self.frag_buf.len() as u32;
        self.frag_buf.extend_from_slice(content);
        Ok((index, offset))
    }

    pub(super) fn flush_fragment(&mut self) -> Result<(), WriteError> {
        if self.frag_buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.frag_buf);
        let seq = self.pipeline.submit(block)?;
        self.frag_seqs.push(seq);
        Ok(())
    }

    /// A file of at least one block: every block (the last one possibly
    /// short) is a data block; all-zero blocks are sparse.
    fn write_large(&mut self, first: Vec<u8>, data: &mut dyn Read) -> Result<u32, WriteError> {
        let bs = self.opts.block_size as usize;
        let start_seq = self.pipeline.next_seq();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut blocks = Vec::new();
        let mut size = 0u64;
        let mut sparse = 0u64;
        let mut block = first;
        loop {
            let len = block.len();
            hasher.update(&block);
            size += len as u64;
            if block[..] == self.zeros[..len] {
                sparse += len as u64;
                blocks.push(SPARSE);
            } else {
                blocks.push(self.pipeline.submit(block)?);
            }
            if len < bs {
                break;
            }
            let mut next = Vec::with_capacity(bs);
            read_block(data, &mut next, bs)?;
            if next.is_empty() {
                break;
            }
            block = next;
        }
        let key = (size, hasher.digest128());
        if let Some(&earlier) = self.large_dups.get(&key) {
            let end = self.pipeline.next_seq();
            self.pipeline.discard(start_seq..end)?;
            self.duplicate_files += 1;
            let fd = self.files[earlier as usize].clone();
            return self.new_file(fd);
        }
        let id = self.new_file(FileData {
            size,
            blocks,
            fragment: None,
            sparse,
        })?;
        self.large_dups.insert(key, id);
        Ok(id)
    }
}
