//! Deterministic generated data with realistic compressibility.
//!
//! Content is built from 16 KiB chunks of three kinds: text-like (words and
//! punctuation from a fixed vocabulary, compresses about 3–4× with zstd),
//! random (incompressible, generated fresh so no chunk repeats inside a
//! block) and structured binary (records of slowly changing integers, like
//! tables in executables and databases). The same seed gives the same bytes.

use std::io::Write;
use std::path::Path;

use crate::Result;

/// Chunk granularity of the content mix.
const CHUNK: usize = 16 << 10;
/// Size of the text and table pools chunks are cut from.
const POOL: usize = 4 << 20;

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// Shares (percent) of each chunk kind; they add up to 100.
#[derive(Clone, Copy)]
pub struct Mix {
    pub text: u64,
    pub random: u64,
}

impl Mix {
    /// Half text-like, half random.
    pub const HALF: Mix = Mix {
        text: 50,
        random: 50,
    };
    /// Like a software tree: half text, 30 % incompressible, 20 % tables.
    pub const TREE: Mix = Mix {
        text: 50,
        random: 30,
    };
}

/// The text and table pools, built once.
pub struct Pools {
    text: Vec<u8>,
    table: Vec<u8>,
}

impl Pools {
    pub fn new() -> Pools {
        let mut rng = Rng::new(0x5eed_7e47);
        // A vocabulary of pronounceable words, Zipf-like use (short list hit often).
        let syll = [
            "ka", "lo", "mi", "re", "the", "and", "ion", "ing", "con", "per", "ex", "al", "st",
            "ou", "an", "er", "in", "to", "de", "fi", "le", "sys", "tem", "data", "file", "dir",
        ];
        let words: Vec<String> = (0..400)
            .map(|_| {
                let n = rng.range(1, 4);
                (0..n)
                    .map(|_| syll[rng.below(syll.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let mut text = Vec::with_capacity(POOL + 64);
        let mut col = 0;
        while text.len() < POOL {
            let a = rng.below(words.len() as u64);
            let b = rng.below(words.len() as u64);
            let w = &words[(a * b / words.len() as u64) as usize];
            text.extend_from_slice(w.as_bytes());
            col += w.len() + 1;
            match rng.below(16) {
                0 => text.extend_from_slice(b". "),
                1 => text.extend_from_slice(b", "),
                _ if col > 72 => {
                    text.push(b'\n');
                    col = 0;
                }
                _ => text.push(b' '),
            }
        }
        text.truncate(POOL);
        let mut table = Vec::with_capacity(POOL);
        let (mut id, mut val) = (0u32, 1000u32);
        while table.len() < POOL {
            id = id.wrapping_add(1);
            val = val.wrapping_add(rng.below(64) as u32);
            table.extend_from_slice(&id.to_le_bytes());
            table.extend_from_slice(&val.to_le_bytes());
            table.extend_from_slice(&(rng.below(8) as u16).to_le_bytes());
            table.extend_from_slice(&[0u8; 6]);
        }
        table.truncate(POOL);
        Pools { text, table }
    }

    /// Fill `out` chunk by chunk with the `mix`.
    pub fn fill(&self, rng: &mut Rng, mix: Mix, out: &mut [u8]) {
        for chunk in out.chunks_mut(CHUNK) {
            let kind = rng.below(100);
            if kind < mix.text {
                let at = rng.below((POOL - CHUNK) as u64) as usize;
                chunk.copy_from_slice(&self.text[at..at + chunk.len()]);
            } else if kind < mix.text + mix.random {
                for w in chunk.chunks_mut(8) {
                    let r = rng.next_u64().to_le_bytes();
                    w.copy_from_slice(&r[..w.len()]);
                }
            } else {
                let at = rng.below((POOL - CHUNK) as u64) as usize;
                chunk.copy_from_slice(&self.table[at..at + chunk.len()]);
            }
        }
    }

    /// Write `len` bytes of `mix` content from `rng` to a new file at `path`.
    pub fn write_file(&self, path: &Path, len: u64, rng: &mut Rng, mix: Mix) -> Result {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.fill(rng, mix, &mut buf[..n]);
            w.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", path.display()))?;
            left -= n as u64;
        }
        w.flush().map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let p = Pools::new();
        let (mut a, mut b) = (vec![0u8; 100_000], vec![0u8; 100_000]);
        p.fill(&mut Rng::new(7), Mix::TREE, &mut a);
        p.fill(&mut Rng::new(7), Mix::TREE, &mut b);
        assert_eq!(a, b);
        p.fill(&mut Rng::new(8), Mix::TREE, &mut b);
        assert_ne!(a, b);
    }
}
