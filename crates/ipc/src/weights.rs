//! The shared-memory weight block.
//!
//! Layout of the mapping (native endianness; the block never leaves the
//! machine):
//!
//! ```text
//! offset 0    magic: u64           "FRRLWGT2"
//!        8    len: u64             f32 weights per buffer
//!        16   latest: AtomicU64    ((version + 1) << 1) | buffer, 0 = nothing published
//!        24   seq[0], seq[1]       per-buffer sequence counters, odd while written
//!        40   version[0], [1]      version held by each buffer
//!        56   stats_len: u64       f64 statistics per buffer
//!        64   buffer 0             len x f32 (padded to 8 bytes), then stats_len x f64
//!        ...  buffer 1             the same, 64-byte aligned
//! ```
//!
//! The statistics travel with the weights they belong to (the observation
//! normaliser's mean and variance), so a reader gets both of one version.
//!
//! One writer (the learner) alternates between the two buffers, so a reader
//! copying the latest version is only disturbed if the writer publishes twice
//! during the copy; each buffer carries a seqlock counter, and a reader that
//! sees it change retries. The counters are atomics; the weights are copied
//! with `memcpy` between processes (see `copy_shared`); full fences separate
//! the copies from the counters on both sides.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use thiserror::Error;

use crate::shm::SharedMapping;

const MAGIC: u64 = u64::from_le_bytes(*b"FRRLWGT2");
const HEADER_BYTES: usize = 64;

#[derive(Debug, Error)]
pub enum IpcError {
    #[error("shared memory: {0}")]
    System(#[from] nix::Error),
    #[error("weight block: {0}")]
    Invalid(String),
}

/// Weights shared between processes; see the module documentation.
pub struct WeightBlock {
    mapping: SharedMapping,
    len: usize,
    stats_len: usize,
    /// The buffer the next `publish` writes into.
    next_buffer: usize,
}

/// 64-bit words of one buffer: the weights two to a word, then the stats.
fn buffer_words(len: usize, stats_len: usize) -> usize {
    len.div_ceil(2) + stats_len
}

fn buffer_bytes(len: usize, stats_len: usize) -> usize {
    (buffer_words(len, stats_len) * 8).div_ceil(64) * 64
}

impl WeightBlock {
    /// A new block for `len` weights and no statistics, with nothing
    /// published yet.
    pub fn create(len: usize) -> Result<Self, IpcError> {
        Self::create_with_stats(len, 0)
    }

    /// A new block for `len` f32 weights and `stats_len` f64 statistics per
    /// version, with nothing published yet.
    pub fn create_with_stats(len: usize, stats_len: usize) -> Result<Self, IpcError> {
        if len == 0 {
            return Err(IpcError::Invalid(
                "a weight block needs at least one value".into(),
            ));
        }
        let map_len = HEADER_BYTES + 2 * buffer_bytes(len, stats_len);
        let block = WeightBlock {
            mapping: SharedMapping::create(c"ferrorl-weights", map_len)?,
            len,
            stats_len,
            next_buffer: 0,
        };
        block.word64(0).store(MAGIC, Ordering::Relaxed);
        block.word64(8).store(len as u64, Ordering::Relaxed);
        block.word64(56).store(stats_len as u64, Ordering::Relaxed);
        block.word64(16).store(0, Ordering::Release);
        Ok(block)
    }

    /// Maps a block created by another process, from its file descriptor.
    pub fn open(fd: OwnedFd) -> Result<Self, IpcError> {
        let size = SharedMapping::file_size(&fd)?;
        if size < HEADER_BYTES {
            return Err(IpcError::Invalid(format!(
                "the block is {size} bytes, smaller than its header"
            )));
        }
        let header = WeightBlock {
            mapping: SharedMapping::map(fd, HEADER_BYTES)?,
            len: 0,
            stats_len: 0,
            next_buffer: 0,
        };
        let (magic, len, stats_len) = (
            header.word64(0).load(Ordering::Relaxed),
            header.word64(8).load(Ordering::Relaxed) as usize,
            header.word64(56).load(Ordering::Relaxed) as usize,
        );
        let fd = header.mapping.into_fd()?;
        if magic != MAGIC {
            return Err(IpcError::Invalid("not a weight block (bad magic)".into()));
        }
        let map_len = len
            .checked_add(stats_len)
            .filter(|n| *n < 1 << 40)
            .map(|_| HEADER_BYTES + 2 * buffer_bytes(len, stats_len));
        match map_len {
            Some(map_len) if len > 0 && size >= map_len => Ok(WeightBlock {
                mapping: SharedMapping::map(fd, map_len)?,
                len,
                stats_len,
                next_buffer: 0,
            }),
            _ => Err(IpcError::Invalid(format!(
                "the header says {len} weights and {stats_len} statistics, but the block is {size} bytes"
            ))),
        }
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= HEADER_BYTES);
        // SAFETY: inside the mapped header, 8-byte aligned (the mapping is
        // page aligned), and only ever accessed atomically.
        unsafe { &*(self.mapping.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// Buffer `index` as 64-bit words: the weights (two each; the last
    /// word's upper half is padding when `len` is odd), then the statistics.
    fn buffer(&self, index: usize) -> (&[AtomicU64], &[AtomicU64]) {
        let offset = HEADER_BYTES + index * buffer_bytes(self.len, self.stats_len);
        // SAFETY: inside the mapping (buffers are padded to 64 bytes), 8-byte
        // aligned, and only ever accessed atomically.
        let words = unsafe {
            std::slice::from_raw_parts(
                self.mapping.as_ptr().add(offset) as *const AtomicU64,
                buffer_words(self.len, self.stats_len),
            )
        };
        words.split_at(self.len.div_ceil(2))
    }

    fn seq(&self, index: usize) -> &AtomicU64 {
        self.word64(24 + 8 * index)
    }

    /// Weights per version.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Statistics per version.
    pub fn stats_len(&self) -> usize {
        self.stats_len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new descriptor of the block without close-on-exec, for a child
    /// process to inherit and pass to [`WeightBlock::open`]. Close it in the
    /// parent once the child has started.
    pub fn share(&self) -> Result<OwnedFd, IpcError> {
        Ok(nix::unistd::dup(self.mapping.fd())?)
    }

    /// The block's own (close-on-exec) descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.mapping.fd().as_raw_fd()
    }

    /// The block's descriptor, to send to another process.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.mapping.fd()
    }

    /// Copies a weight set into buffer `b` (which no reader trusts until
    /// its sequence counter is even again).
    fn write_buffer(&self, b: usize, weights: &[f32], stats: &[f64]) {
        let (words, stat_words) = self.buffer(b);
        // SAFETY: the buffer holds `words.len() * 8 >= weights.len() * 4`
        // bytes for the weights, then room for the statistics; the sources
        // are this process's own memory. See `copy_shared`.
        unsafe {
            copy_shared(
                weights.as_ptr().cast(),
                words.as_ptr() as *mut u8,
                weights.len() * 4,
            );
            copy_shared(
                stats.as_ptr().cast(),
                stat_words.as_ptr() as *mut u8,
                stats.len() * 8,
            );
        }
    }

    /// Copies buffer `b` out; the caller checks its sequence counter after.
    fn read_buffer(&self, b: usize, out: &mut [f32], stats_out: &mut [f64]) {
        let (words, stat_words) = self.buffer(b);
        // SAFETY: as in `write_buffer`, the other way round; the
        // destinations are ours and exactly this long.
        unsafe {
            copy_shared(
                words.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                out.len() * 4,
            );
            copy_shared(
                stat_words.as_ptr().cast(),
                stats_out.as_mut_ptr().cast(),
                stats_out.len() * 8,
            );
        }
    }

    /// The latest published version, if any.
    pub fn latest_version(&self) -> Option<u64> {
        match self.word64(16).load(Ordering::Acquire) {
            0 => None,
            latest => Some((latest >> 1) - 1),
        }
    }

    /// Publishes `weights` and `stats` as `version` (which must be greater
    /// than every version published before; the first may be 0). Readers see
    /// either the previous set or this one, never a mix.
    pub fn publish(&mut self, weights: &[f32], version: u64) -> Result<(), IpcError> {
        self.publish_with_stats(weights, &[], version)
    }

    /// [`WeightBlock::publish`] with the statistics that go with the weights.
    pub fn publish_with_stats(
        &mut self,
        weights: &[f32],
        stats: &[f64],
        version: u64,
    ) -> Result<(), IpcError> {
        if weights.len() != self.len || stats.len() != self.stats_len {
            return Err(IpcError::Invalid(format!(
                "publishing {} weights and {} statistics into a block of {} and {}",
                weights.len(),
                stats.len(),
                self.len,
                self.stats_len
            )));
        }
        if version >= (1 << 62) - 1 || self.latest_version().is_some_and(|v| version <= v) {
            return Err(IpcError::Invalid(format!(
                "version {version} does not follow the latest published version {:?}",
                self.latest_version()
            )));
        }
        let b = self.next_buffer;
        let seq = self.seq(b);
        let start = seq.load(Ordering::Relaxed);
        seq.store(start + 1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.write_buffer(b, weights, stats);
        fence(Ordering::SeqCst);
        self.word64(40 + 8 * b).store(version, Ordering::Relaxed);
        seq.store(start + 2, Ordering::Release);
        self.word64(16)
            .store(((version + 1) << 1) | b as u64, Ordering::Release);
        self.next_buffer = 1 - b;
        Ok(())
    }

    /// Copies the latest published weights into `out` and returns their
    /// version, or `None` when nothing was published yet. Never blocks the
    /// writer; retries if the writer overwrote the buffer during the copy.
    pub fn read_into(&self, out: &mut [f32]) -> Result<Option<u64>, IpcError> {
        self.read_with_stats_into(out, &mut [])
    }

    /// [`WeightBlock::read_into`] with the statistics of the same version.
    pub fn read_with_stats_into(
        &self,
        out: &mut [f32],
        stats_out: &mut [f64],
    ) -> Result<Option<u64>, IpcError> {
        if out.len() != self.len || stats_out.len() != self.stats_len {
            return Err(IpcError::Invalid(format!(
                "reading a block of {} weights and {} statistics into {} and {}",
                self.len,
                self.stats_len,
                out.len(),
                stats_out.len()
            )));
        }
        loop {
            let latest = self.word64(16).load(Ordering::Acquire);
            if latest == 0 {
                return Ok(None);
            }
            let b = (latest & 1) as usize;
            let seq = self.seq(b);
            let before = seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            self.read_buffer(b, out, stats_out);
            let version = self.word64(40 + 8 * b).load(Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if seq.load(Ordering::Relaxed) == before {
                return Ok(Some(version));
            }
        }
    }
}

/// Copies `len` bytes to or from the shared buffers, with `memcpy`.
///
/// The writer and the readers of a block are always different processes
/// (the learner publishes; workers and the evaluator read), so the compiler
/// of either never sees the other's accesses: each copy reads every byte
/// once into the process's own memory, and the sequence counters, with full
/// fences on both sides of the copy, decide whether the bytes are used. A
/// plain `memcpy` moves 4 MB between two cores here about twice as fast as
/// copies made of atomic words, which the compiler cannot vectorise.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and
/// the ranges must not overlap.
unsafe fn copy_shared(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
}
