//! A snapshot's bytes, read a block at a time as lookups reach them: what makes a new
//! instance's first `get` cost a few small reads instead of reading (and hashing) the whole
//! checkpoint, 19 MB at 100k items.
//!
//! Each [`BLOCK`] of the snapshot has its hash in the checkpoint's header (itself hashed;
//! `jsonl/checkpoint.rs`), and a block is checked against it when first read, so nothing is
//! used before it is verified. A block that does not match, or cannot be read, marks the
//! pages [`Pages::damaged`] and answers `None`; the store then distrusts the checkpoint and
//! indexes the files from the start (`JsonlStore::retry`), before any answer built on the
//! damaged lookup leaves the store. An operation that needs everything (a full decode, a
//! listing) reads the rest in one read ([`Pages::whole`]).

use std::cell::{Cell, RefCell};

use crate::hash::hash64_wide;

/// Bytes per verified block.
pub const BLOCK: usize = 4096;

/// Reads exactly `buf.len()` bytes at offset `at` of the snapshot; `false` if it cannot.
pub type ReadAt = Box<dyn Fn(u64, &mut [u8]) -> bool>;

/// The hash a block is checked against (`jsonl/checkpoint.rs` writes one per block).
pub fn block_hash(block: &[u8]) -> u64 {
    hash64_wide(block)
}

enum State {
    /// Blocks read so far (each verified).
    Paged {
        blocks: Vec<Option<Box<[u8]>>>,
        read: ReadAt,
    },
    /// Every byte, verified (or given whole by the caller).
    Whole(Vec<u8>),
}

/// The bytes of one snapshot, paged in on demand.
pub struct Pages {
    len: usize,
    /// Bytes per block: [`BLOCK`], smaller in tests.
    block: usize,
    /// One hash per block (none for pages given whole).
    hashes: Vec<u64>,
    state: RefCell<State>,
    damaged: Cell<bool>,
    /// Blocks read one at a time so far.
    loaded: Cell<usize>,
}

/// Once this share of the blocks (1 in `WHOLE_AFTER`) was read one at a time, the rest is
/// read in one read: a store read block by block in the end (a warm instance's lookups over
/// time, a scan of the lines after the checkpoint) costs at most about what one whole read
/// and check would have, not a host call per block.
const WHOLE_AFTER: usize = 8;

impl Pages {
    /// Pages over a snapshot of `len` bytes read through `read` in blocks of `block` bytes
    /// ([`BLOCK`]), block `i` hashing as `hashes[i]`; `None` if the number of hashes is not
    /// one per block.
    pub fn paged(len: usize, block: usize, hashes: Vec<u64>, read: ReadAt) -> Option<Pages> {
        (block > 0 && hashes.len() == len.div_ceil(block)).then(|| Pages {
            len,
            block,
            state: RefCell::new(State::Paged {
                blocks: (0..hashes.len()).map(|_| None).collect(),
                read,
            }),
            hashes,
            damaged: Cell::new(false),
            loaded: Cell::new(0),
        })
    }

    /// Pages over bytes the caller already has and trusts.
    #[cfg(test)]
    pub fn whole(bytes: Vec<u8>) -> Pages {
        Pages {
            len: bytes.len(),
            block: BLOCK,
            hashes: Vec::new(),
            state: RefCell::new(State::Whole(bytes)),
            damaged: Cell::new(false),
            loaded: Cell::new(0),
        }
    }

    /// The snapshot's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether a block failed to read or to verify (every later read answers `None`).
    pub fn damaged(&self) -> bool {
        self.damaged.get()
    }

    /// `f` of the `n` bytes at `at`; `None` if they are out of range or a block they span is
    /// damaged. `f` must not read these pages again (they are borrowed while it runs).
    pub fn with<R>(&self, at: usize, n: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let end = at.checked_add(n).filter(|&e| e <= self.len)?;
        if self.damaged.get() {
            return None;
        }
        if self.loaded.get() * WHOLE_AFTER >= self.hashes.len().max(64) {
            self.make_whole()?;
        }
        let mut state = self.state.borrow_mut();
        let (blocks, read) = match &mut *state {
            State::Whole(bytes) => return Some(f(&bytes[at..end])),
            State::Paged { blocks, read } => (blocks, read),
        };
        if n == 0 {
            return Some(f(&[]));
        }
        let block = self.block;
        let (first, last) = (at / block, (end - 1) / block);
        for (b, slot) in blocks.iter_mut().enumerate().take(last + 1).skip(first) {
            if slot.is_none() {
                match self.load(b, read) {
                    Some(block) => {
                        *slot = Some(block);
                        self.loaded.set(self.loaded.get() + 1);
                    }
                    None => {
                        self.damaged.set(true);
                        return None;
                    }
                }
            }
        }
        let slice = |b: usize| blocks[b].as_deref().unwrap_or(&[]);
        if first == last {
            let from = at - first * block;
            return Some(f(slice(first).get(from..from + n)?));
        }
        let mut joined = Vec::with_capacity(n);
        for b in first..=last {
            let bytes = slice(b);
            let lo = at.saturating_sub(b * block).min(bytes.len());
            let hi = (end - b * block).min(bytes.len());
            joined.extend_from_slice(bytes.get(lo..hi)?);
        }
        Some(f(&joined))
    }

    /// `f` of every byte: the blocks not read yet are read in one read and verified.
    pub fn whole_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.make_whole()?;
        self.with(0, self.len, f)
    }

    /// The bytes, all read and verified.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        self.make_whole()?;
        match self.state.into_inner() {
            State::Whole(bytes) => Some(bytes),
            State::Paged { .. } => None,
        }
    }

    fn make_whole(&self) -> Option<()> {
        if self.damaged.get() {
            return None;
        }
        let mut state = self.state.borrow_mut();
        let State::Paged { read, .. } = &*state else {
            return Some(());
        };
        // Every block is checked again, those read before too: one pass over bytes just read.
        let mut bytes = vec![0u8; self.len];
        let ok = read(0, &mut bytes)
            && bytes
                .chunks(self.block)
                .zip(&self.hashes)
                .all(|(block, &h)| block_hash(block) == h);
        if !ok {
            self.damaged.set(true);
            return None;
        }
        *state = State::Whole(bytes);
        Some(())
    }

    /// Block `b`, read and verified.
    fn load(&self, b: usize, read: &ReadAt) -> Option<Box<[u8]>> {
        let at = b * self.block;
        let mut block = vec![0u8; self.block.min(self.len - at)].into_boxed_slice();
        (read(at as u64, &mut block) && block_hash(&block) == *self.hashes.get(b)?).then_some(block)
    }
}

/// Pages of `block` bytes over `file`, checked against the hashes of `good` (tests: the
/// two differ where a test damages the file).
#[cfg(test)]
pub(crate) fn in_memory(good: &[u8], file: Vec<u8>, block: usize) -> Pages {
    let hashes = good.chunks(block).map(block_hash).collect();
    let read: ReadAt = Box::new(move |at, buf| {
        let at = at as usize;
        match file.get(at..at + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    });
    match Pages::paged(good.len(), block, hashes, read) {
        Some(p) => p,
        None => unreachable!("one hash per block"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(bytes: &[u8], corrupt_block: Option<usize>) -> Pages {
        let mut file = bytes.to_vec();
        if let Some(b) = corrupt_block {
            file[b * BLOCK] ^= 1;
        }
        in_memory(bytes, file, BLOCK)
    }

    #[test]
    fn reads_within_and_across_blocks_give_the_bytes() {
        let bytes: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i * 7 % 251) as u8).collect();
        let p = pages(&bytes, None);
        for (at, n) in [
            (0, 8),
            (BLOCK - 3, 8),
            (10, 2 * BLOCK + 5),
            (3 * BLOCK, 100),
            (5, 0),
        ] {
            assert_eq!(p.with(at, n, <[u8]>::to_vec).unwrap(), &bytes[at..at + n]);
        }
        assert!(p.with(3 * BLOCK + 90, 11, |_| ()).is_none(), "out of range");
        assert!(!p.damaged());
        assert_eq!(p.into_bytes().unwrap(), bytes);
    }

    #[test]
    fn reading_an_eighth_of_the_blocks_one_by_one_reads_the_rest_at_once() {
        let bytes: Vec<u8> = (0..128 * 64).map(|i| (i % 253) as u8).collect();
        let reads = std::rc::Rc::new(Cell::new(0));
        let hashes = bytes.chunks(64).map(block_hash).collect();
        let (file, count) = (bytes.clone(), reads.clone());
        let read: ReadAt = Box::new(move |at, buf| {
            count.set(count.get() + 1);
            buf.copy_from_slice(&file[at as usize..at as usize + buf.len()]);
            true
        });
        let p = Pages::paged(bytes.len(), 64, hashes, read).unwrap();
        for b in 0..16 {
            assert_eq!(
                p.with(b * 64 * 7 % bytes.len(), 4, <[u8]>::to_vec)
                    .unwrap()
                    .len(),
                4
            );
        }
        assert_eq!(reads.get(), 16, "one read per block so far");
        for at in (0..bytes.len()).step_by(64) {
            assert_eq!(p.with(at, 64, <[u8]>::to_vec).unwrap(), &bytes[at..at + 64]);
        }
        assert_eq!(reads.get(), 17, "then one read of everything");
    }

    #[test]
    fn a_damaged_block_is_never_used_and_marks_the_pages() {
        let bytes: Vec<u8> = (0..3 * BLOCK).map(|i| (i % 256) as u8).collect();
        let p = pages(&bytes, Some(1));
        assert!(p.with(0, 8, |_| ()).is_some(), "block 0 is intact");
        assert!(p.with(BLOCK + 8, 8, |_| ()).is_none());
        assert!(p.damaged());
        assert!(p.with(0, 8, |_| ()).is_none(), "nothing is answered after");
        let p = pages(&bytes, Some(2));
        assert!(
            p.whole_with(|_| ()).is_none(),
            "the whole read checks every block"
        );
        assert!(pages(&bytes, Some(0)).into_bytes().is_none());
    }
}
