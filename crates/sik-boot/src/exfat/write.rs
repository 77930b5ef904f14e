//! Writing to an exFAT volume: cluster allocation in the bitmap (and FAT
//! chains), directory entry sets, file contents, deletion.

use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::{
    ALLOC_POSSIBLE, ATTR_ARCHIVE, ATTR_DIR, EOC, Entry, ExFat, Loc, NO_FAT_CHAIN, bad, name_hash,
    name_refused, set_checksum,
};

impl ExFat {
    fn is_free(&self, c: u32) -> bool {
        let i = (c - 2) as usize;
        self.bitmap[i / 8] & (1 << (i % 8)) == 0
    }

    fn mark(&mut self, c: u32, used: bool) {
        let i = (c - 2) as usize;
        if used {
            self.bitmap[i / 8] |= 1 << (i % 8);
        } else {
            self.bitmap[i / 8] &= !(1 << (i % 8));
        }
    }

    fn write_bitmap(&self) -> io::Result<()> {
        let cl = self.clusters_of(self.bitmap_loc)?;
        let cb = self.cluster_bytes() as usize;
        for (i, c) in cl.iter().enumerate() {
            let lo = (i * cb).min(self.bitmap.len());
            let hi = ((i + 1) * cb).min(self.bitmap.len());
            if lo < hi {
                self.f
                    .write_all_at(&self.bitmap[lo..hi], self.cluster_pos(*c))?;
            }
        }
        Ok(())
    }

    /// Allocate `n` clusters: one contiguous run when there is one, else
    /// the first free ones linked in the FAT. Marks them in the bitmap (in
    /// memory; [`ExFat::write_bitmap`] stores it).
    fn allocate(&mut self, n: u64, want_chain: bool) -> io::Result<(Vec<u32>, bool)> {
        if n == 0 {
            return Ok((Vec::new(), true));
        }
        let total = self.clusters;
        let mut run_start = None;
        let mut run = 0u64;
        let mut found = None;
        for i in 0..total {
            let c = i + 2;
            if self.is_free(c) {
                if run == 0 {
                    run_start = Some(c);
                }
                run += 1;
                if run == n {
                    found = run_start;
                    break;
                }
            } else {
                run = 0;
            }
        }
        let (v, contiguous) = if let Some(s) = found {
            ((s..s + n as u32).collect::<Vec<u32>>(), true)
        } else {
            let v: Vec<u32> = (2..total + 2)
                .filter(|c| self.is_free(*c))
                .take(n as usize)
                .collect();
            if (v.len() as u64) < n {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on the exFAT volume",
                ));
            }
            (v, false)
        };
        for c in &v {
            self.mark(*c, true);
        }
        if !contiguous || want_chain {
            for w in v.windows(2) {
                self.fat_set(w[0], w[1])?;
            }
            self.fat_set(v[v.len() - 1], EOC)?;
        }
        Ok((v, contiguous && !want_chain))
    }

    fn free_loc(&mut self, loc: Loc) -> io::Result<()> {
        for c in self.clusters_of(loc)? {
            self.mark(c, false);
            if !loc.contiguous {
                self.fat_set(c, 0)?;
            }
        }
        Ok(())
    }

    /// Write the bytes of a directory's entries at byte `at` of it.
    fn write_in_dir(&self, dir: Loc, at: u64, data: &[u8]) -> io::Result<()> {
        let cl = self.clusters_of(dir)?;
        let cb = self.cluster_bytes();
        for (k, chunk) in data.chunks(32).enumerate() {
            let off = at + 32 * k as u64;
            let c = *cl
                .get((off / cb) as usize)
                .ok_or_else(|| bad("exFAT: entry beyond its directory"))?;
            self.f.write_all_at(chunk, self.cluster_pos(c) + off % cb)?;
        }
        Ok(())
    }

    /// Find `count` consecutive free entry slots in `dir`, growing it by a
    /// cluster when needed (`parent` and `entry`: where `dir` is described;
    /// `None` for the root). Returns the directory (maybe grown) and the slot.
    fn slots(&mut self, rel_dir: &str, count: usize) -> io::Result<(Loc, u64)> {
        loop {
            let dir = self
                .dir_loc(rel_dir)?
                .ok_or_else(|| bad(format!("{rel_dir}: not a directory")))?;
            let bytes = self.read_loc(dir)?;
            let mut run = 0;
            for (i, e) in bytes.chunks_exact(32).enumerate() {
                if e[0] < 0x80 {
                    run += 1;
                    if run == count {
                        return Ok((dir, ((i + 1 - count) * 32) as u64));
                    }
                } else {
                    run = 0;
                }
            }
            self.grow_dir(rel_dir, dir)?;
        }
    }

    fn grow_dir(&mut self, rel_dir: &str, dir: Loc) -> io::Result<()> {
        let old = self.clusters_of(dir)?;
        let (new, _) = self.allocate(1, true)?;
        let c = new[0];
        self.f.write_all_at(
            &vec![0u8; self.cluster_bytes() as usize],
            self.cluster_pos(c),
        )?;
        // A contiguous directory becomes a FAT chain to grow.
        if dir.contiguous {
            for w in old.windows(2) {
                self.fat_set(w[0], w[1])?;
            }
        }
        if let Some(last) = old.last() {
            self.fat_set(*last, c)?;
        }
        self.write_bitmap()?;
        if let Some((pdir, Some(e))) = self.resolve(rel_dir)? {
            let mut set = self.read_set(pdir, &e)?;
            let len = (old.len() as u64 + 1) << self.cluster_shift;
            set[32 + 1] &= !NO_FAT_CHAIN;
            set[32 + 8..32 + 16].copy_from_slice(&len.to_le_bytes());
            set[32 + 24..32 + 32].copy_from_slice(&len.to_le_bytes());
            seal(&mut set);
            self.write_in_dir(pdir, e.at, &set)?;
        }
        Ok(())
    }

    fn read_set(&self, dir: Loc, e: &Entry) -> io::Result<Vec<u8>> {
        let bytes = self.read_loc(dir)?;
        let lo = e.at as usize;
        bytes
            .get(lo..lo + e.count * 32)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| bad("exFAT: entry set beyond its directory"))
    }

    fn split(rel: &str) -> (String, String) {
        let t = rel.trim_matches('/');
        match t.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), t.to_string()),
        }
    }

    /// Make a directory and its parents.
    pub fn mkdir_all(&mut self, rel: &str) -> io::Result<()> {
        let mut acc = String::new();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            let parent = acc.clone();
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            match self.stat(&acc)? {
                Some(e) if e.is_dir => continue,
                Some(_) => return Err(bad(format!("{acc}: a file, not a directory"))),
                None => {}
            }
            if let Some(why) = name_refused(c) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
            let (cl, _) = self.allocate(1, true)?;
            self.f.write_all_at(
                &vec![0u8; self.cluster_bytes() as usize],
                self.cluster_pos(cl[0]),
            )?;
            self.write_bitmap()?;
            let len = self.cluster_bytes();
            let set = self.entry_set(c, ATTR_DIR, cl[0], false, len);
            let (dir, at) = self.slots(&parent, set.len() / 32)?;
            self.write_in_dir(dir, at, &set)?;
        }
        Ok(())
    }

    fn entry_set(&self, name: &str, attr: u16, first: u32, contiguous: bool, len: u64) -> Vec<u8> {
        let units: Vec<u16> = name.encode_utf16().collect();
        let names = units.len().div_ceil(15);
        let mut set = vec![0u8; 32 * (2 + names)];
        set[0] = 0x85;
        set[1] = (1 + names) as u8;
        set[4..6].copy_from_slice(&attr.to_le_bytes());
        let ts = timestamp_now();
        for o in [8, 12, 16] {
            set[o..o + 4].copy_from_slice(&ts.to_le_bytes());
        }
        // UTC offsets valid and zero: the times are UTC.
        set[22] = 0x80;
        set[23] = 0x80;
        set[24] = 0x80;
        let s = &mut set[32..64];
        s[0] = 0xC0;
        s[1] = ALLOC_POSSIBLE | if contiguous { NO_FAT_CHAIN } else { 0 };
        s[3] = units.len() as u8;
        s[4..6].copy_from_slice(&name_hash(&self.upper(name)).to_le_bytes());
        s[8..16].copy_from_slice(&len.to_le_bytes());
        s[20..24].copy_from_slice(&first.to_le_bytes());
        s[24..32].copy_from_slice(&len.to_le_bytes());
        for (k, chunk) in units.chunks(15).enumerate() {
            let ne = &mut set[64 + 32 * k..96 + 32 * k];
            ne[0] = 0xC1;
            for (j, u) in chunk.iter().enumerate() {
                ne[2 + 2 * j..4 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        seal(&mut set);
        set
    }

    /// Write a file of `size` bytes from `src` at `rel` (parents must
    /// exist), replacing a file there: the contents go to fresh clusters,
    /// then the entry is switched, then the old clusters are freed.
    pub fn write_file(&mut self, rel: &str, src: &mut dyn Read, size: u64) -> io::Result<()> {
        let (dir_rel, name) = Self::split(rel);
        if let Some(why) = name_refused(&name) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let old = self.stat(rel)?;
        if old.as_ref().is_some_and(|e| e.is_dir) {
            return Err(bad(format!("{rel}: a directory")));
        }
        let n = size.div_ceil(self.cluster_bytes());
        let (cl, contiguous) = self.allocate(n, false)?;
        let written = self.fill(&cl, src, size);
        if let Err(e) = written {
            for c in &cl {
                self.mark(*c, false);
            }
            return Err(e);
        }
        self.write_bitmap()?;
        let first = cl.first().copied().unwrap_or(0);
        match old {
            Some(e) => {
                let (pdir, _) = self.resolve(rel)?.ok_or_else(|| bad("entry vanished"))?;
                let mut set = self.read_set(pdir, &e)?;
                let ts = timestamp_now();
                set[12..16].copy_from_slice(&ts.to_le_bytes());
                set[16..20].copy_from_slice(&ts.to_le_bytes());
                set[32 + 1] = ALLOC_POSSIBLE | if contiguous { NO_FAT_CHAIN } else { 0 };
                set[32 + 8..32 + 16].copy_from_slice(&size.to_le_bytes());
                set[32 + 20..32 + 24].copy_from_slice(&first.to_le_bytes());
                set[32 + 24..32 + 32].copy_from_slice(&size.to_le_bytes());
                seal(&mut set);
                self.write_in_dir(pdir, e.at, &set)?;
                self.free_loc(e.loc())?;
                self.write_bitmap()
            }
            None => {
                let set = self.entry_set(&name, ATTR_ARCHIVE, first, contiguous, size);
                let r = self
                    .slots(&dir_rel, set.len() / 32)
                    .and_then(|(dir, at)| self.write_in_dir(dir, at, &set));
                if let Err(e) = r {
                    self.free_loc(Loc {
                        first,
                        contiguous,
                        len: size,
                    })?;
                    self.write_bitmap()?;
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    fn fill(&self, cl: &[u32], src: &mut dyn Read, size: u64) -> io::Result<()> {
        let cb = self.cluster_bytes() as usize;
        let mut buf = vec![0u8; cb.max(1 << 20)];
        let per = buf.len() / cb;
        let mut left = size;
        for group in cl.chunks(per) {
            // Consecutive clusters are written in one go.
            let want = (group.len() * cb).min(left as usize);
            src.read_exact(&mut buf[..want])?;
            let mut i = 0;
            while i < group.len() {
                let mut j = i + 1;
                while j < group.len() && group[j] == group[j - 1] + 1 {
                    j += 1;
                }
                let lo = i * cb;
                let hi = (j * cb).min(want);
                if lo < hi {
                    self.put(&buf[lo..hi], self.cluster_pos(group[i]))?;
                }
                i = j;
            }
            left -= want as u64;
        }
        Ok(())
    }

    /// Write file contents at `pos`. On a disk image file a run of zeros
    /// is a punched hole instead (it reads back as zeros whatever the
    /// clusters held before), so a sparse ISO stays sparse in the image; a
    /// device, or a filesystem that cannot punch holes, gets the bytes.
    fn put(&self, data: &[u8], pos: u64) -> io::Result<()> {
        if self.image_file && data.iter().all(|b| *b == 0) {
            let flags =
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
            if rustix::fs::fallocate(&self.f, flags, pos, data.len() as u64).is_ok() {
                return Ok(());
            }
        }
        self.f.write_all_at(data, pos)
    }

    /// Delete a file (not a directory).
    pub fn remove_file(&mut self, rel: &str) -> io::Result<()> {
        let Some((pdir, Some(e))) = self.resolve(rel)? else {
            return Ok(());
        };
        if e.is_dir {
            return Err(bad(format!("{rel}: a directory")));
        }
        let mut set = self.read_set(pdir, &e)?;
        for k in 0..e.count {
            set[32 * k] &= 0x7F;
        }
        self.write_in_dir(pdir, e.at, &set)?;
        self.free_loc(e.loc())?;
        self.write_bitmap()
    }

    /// Flush to the device.
    pub fn sync(&self) -> io::Result<()> {
        self.f.sync_all()
    }
}

fn seal(set: &mut [u8]) {
    let c = set_checksum(set);
    set[2..4].copy_from_slice(&c.to_le_bytes());
}

/// Now as an exFAT timestamp (UTC, 2-second resolution).
fn timestamp_now() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let y = (year - 1980).clamp(0, 127) as u32;
    (y << 25)
        | ((month as u32) << 21)
        | ((day as u32) << 16)
        | (((rem / 3600) as u32) << 11)
        | ((((rem / 60) % 60) as u32) << 5)
        | ((rem % 60) as u32 / 2)
}
