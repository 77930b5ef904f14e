//! The data path: blocks are compressed on worker threads and written to the
//! image strictly in submission order, so the output does not depend on the
//! number of threads. At most `window` blocks are in flight (queued, being
//! compressed or waiting for their turn to be written), which bounds memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::WriteError;
use super::compress::Codec;
use super::{Compressor, DATA_UNCOMPRESSED};

/// A block handed to a worker.
struct Job {
    seq: u64,
    data: Vec<u8>,
}

/// A compressed (or stored) block coming back from a worker.
struct Done {
    seq: u64,
    bytes: Vec<u8>,
    stored: bool,
}

/// Where one submitted block ended up in the image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Placed {
    /// Absolute byte offset in the image.
    pub(crate) pos: u64,
    /// On-disk size word: length, plus [`DATA_UNCOMPRESSED`] when stored.
    pub(crate) size_word: u32,
}

/// The compression threads. Dropping this (also when a writer is dropped
/// unfinished on an error path) closes the job channel and joins them, so
/// no worker outlives its writer.
struct Workers {
    job_tx: Option<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Close the job channel and wait for every worker; false if one panicked.
    fn close_and_join(&mut self) -> bool {
        self.job_tx = None;
        let mut ok = true;
        for h in self.handles.drain(..) {
            ok &= h.join().is_ok();
        }
        ok
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

/// Bytes of uncompressed blocks the window allows in flight at the least.
const WINDOW_BYTES: u64 = 4 << 20;

/// How many blocks may be in flight: enough that a slow block at the head
/// (the writer must wait for it, output order is fixed) does not leave the
/// other workers without work — at least four per worker and at least
/// [`WINDOW_BYTES`] of data — and still a bound on memory (about twice the
/// window: the blocks and their compressed forms).
fn window(threads: usize, block_size: u32) -> u64 {
    (threads as u64 * 4)
        .max(WINDOW_BYTES / u64::from(block_size.max(1)))
        .max(4)
}

pub(crate) struct Pipeline {
    out: File,
    pos: u64,
    res_rx: Receiver<Done>,
    workers: Workers,
    next_seq: u64,
    next_write: u64,
    window: u64,
    pending: BTreeMap<u64, Done>,
    discarded: BTreeSet<u64>,
    placed: Vec<Placed>,
    /// Data up to here has been handed to the kernel's writeback.
    written_back: u64,
}

/// Data written since the last writeback start after which the next one is
/// started.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// Start writing `len` bytes at `offset` of `file` to disk now, without
/// waiting (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`). The image is
/// fsynced before it is renamed into place; starting writeback while later
/// blocks are still being compressed overlaps the disk writes with the
/// compression, so that final fsync has little left to do. Advisory: an
/// error is ignored (the fsync still guarantees durability).
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the file
    // descriptor is owned by `file` and open for the duration of the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

impl Pipeline {
    /// Starts `threads` workers; data is written from `start` on.
    pub(crate) fn new(
        mut out: File,
        start: u64,
        threads: usize,
        kind: Compressor,
        level: i32,
        block_size: u32,
    ) -> Result<Pipeline, WriteError> {
        out.seek(SeekFrom::Start(start))?;
        let (job_tx, job_rx) = channel::<Job>();
        let (res_tx, res_rx) = channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&job_rx);
            let tx = res_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("squashfs-compress-{i}"))
                .spawn(move || {
                    let mut codec = Codec::new(kind, level, block_size);
                    loop {
                        let job = {
                            let Ok(guard) = rx.lock() else { return };
                            match guard.recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            }
                        };
                        // A panicking compressor must not stall the ordered
                        // writer: the block is then stored uncompressed.
                        let attempt =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                codec.compress(&job.data)
                            }));
                        let compressed = attempt.unwrap_or_else(|_| {
                            codec = Codec::new(kind, level, block_size);
                            None
                        });
                        let done = match compressed {
                            Some(bytes) => Done {
                                seq: job.seq,
                                bytes,
                                stored: false,
                            },
                            None => Done {
                                seq: job.seq,
                                bytes: job.data,
                                stored: true,
                            },
                        };
                        if tx.send(done).is_err() {
                            return;
                        }
                    }
                })?;
            workers.push(handle);
        }
        Ok(Pipeline {
            out,
            pos: start,
            res_rx,
            workers: Workers {
                job_tx: Some(job_tx),
                handles: workers,
            },
            next_seq: 0,
            next_write: 0,
            window: window(threads, block_size),
            pending: BTreeMap::new(),
            discarded: BTreeSet::new(),
            placed: Vec::new(),
            written_back: start,
        })
    }

    /// Sequence number the next submitted block gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Queues a block for compression; returns its sequence number.
    pub(crate) fn submit(&mut self, data: Vec<u8>) -> Result<u64, WriteError> {
        while self.next_seq - self.next_write >= self.window {
            self.receive_one()?;
        }
        let seq = self.next_seq;
        let tx = self.workers.job_tx.as_ref().ok_or(WriteError::Worker)?;
        tx.send(Job { seq, data }).map_err(|_| WriteError::Worker)?;
        self.next_seq += 1;
        while let Ok(done) = self.res_rx.try_recv() {
            self.accept(done)?;
        }
        Ok(seq)
    }

    /// Drops the blocks `range` (a just-streamed file found to duplicate an
    /// earlier one): blocks already written are cut off the end of the image,
    /// the others are skipped when their turn comes. The range must be the
    /// most recently submitted blocks.
    pub(crate) fn discard(&mut self, range: std::ops::Range<u64>) -> Result<(), WriteError> {
        if range.is_empty() {
            return Ok(());
        }
        if range.start < self.next_write {
            let cut = self.placed[range.start as usize].pos;
            self.out.set_len(cut)?;
            self.out.seek(SeekFrom::Start(cut))?;
            self.pos = cut;
            self.written_back = self.written_back.min(cut);
            for p in &mut self.placed[range.start as usize..] {
                *p = Placed::default();
            }
        }
        for seq in range.start.max(self.next_write)..range.end {
            self.discarded.insert(seq);
        }
        Ok(())
    }

    fn receive_one(&mut self) -> Result<(), WriteError> {
        let done = self.res_rx.recv().map_err(|_| WriteError::Worker)?;
        self.accept(done)
    }

    fn accept(&mut self, done: Done) -> Result<(), WriteError> {
        self.pending.insert(done.seq, done);
        while let Some(done) = self.pending.remove(&self.next_write) {
            if self.discarded.remove(&done.seq) {
                self.placed.push(Placed::default());
            } else {
                self.out.write_all(&done.bytes)?;
                let mut size_word = done.bytes.len() as u32;
                if done.stored {
                    size_word |= DATA_UNCOMPRESSED;
                }
                self.placed.push(Placed {
                    pos: self.pos,
                    size_word,
                });
                self.pos += done.bytes.len() as u64;
            }
            self.next_write += 1;
        }
        if self.pos >= self.written_back + WRITEBACK_CHUNK {
            start_writeback(&self.out, self.written_back, self.pos - self.written_back);
            self.written_back = self.pos;
        }
        Ok(())
    }

    /// Waits for every block, stops the workers and hands back the file,
    /// the end of the data area and where each block went (by sequence).
    pub(crate) fn finish(mut self) -> Result<(File, u64, Vec<Placed>), WriteError> {
        self.workers.job_tx = None;
        while self.next_write < self.next_seq {
            self.receive_one()?;
        }
        if !self.workers.close_and_join() {
            return Err(WriteError::Worker);
        }
        Ok((self.out, self.pos, self.placed))
    }
}
