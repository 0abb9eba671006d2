//! The shared-memory weight block.
//!
//! Layout of the mapping (native endianness; the block never leaves the
//! machine):
//!
//! ```text
//! offset 0    magic: u64           "FRRLWGT1"
//!        8    len: u64             f32 values per buffer
//!        16   latest: AtomicU64    (version << 1) | buffer, 0 = nothing published
//!        24   seq[0], seq[1]       per-buffer sequence counters, odd while written
//!        40   version[0], [1]      version held by each buffer
//!        64   buffer 0             len x f32
//!        ...  buffer 1             len x f32, 64-byte aligned
//! ```
//!
//! One writer (the learner) alternates between the two buffers, so a reader
//! copying the latest version is only disturbed if the writer publishes twice
//! during the copy; each buffer carries a seqlock counter, and a reader that
//! sees it change retries. Every access to shared data is an atomic
//! operation (relaxed loads and stores of `u64` words holding two values, ordered by
//! acquire/release on the counters), which is what makes the scheme sound
//! between threads and between processes.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use thiserror::Error;

const MAGIC: u64 = u64::from_le_bytes(*b"FRRLWGT1");
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
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    len: usize,
    /// The buffer the next `publish` writes into.
    next_buffer: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics; the
// pointer stays valid until `drop`, and `publish` needs `&mut self`.
unsafe impl Send for WeightBlock {}
// SAFETY: readers (`&self`) only perform atomic loads.
unsafe impl Sync for WeightBlock {}

fn buffer_bytes(len: usize) -> usize {
    (len * 4).div_ceil(64) * 64
}

impl WeightBlock {
    /// A new block for `len` values, with nothing published yet.
    pub fn create(len: usize) -> Result<Self, IpcError> {
        if len == 0 {
            return Err(IpcError::Invalid(
                "a weight block needs at least one value".into(),
            ));
        }
        let fd = memfd_create(c"ferrorl-weights", MFdFlags::MFD_CLOEXEC)?;
        let map_len = HEADER_BYTES + 2 * buffer_bytes(len);
        nix::unistd::ftruncate(&fd, map_len as i64)?;
        let block = Self::map(fd, map_len, len)?;
        block.word64(0).store(MAGIC, Ordering::Relaxed);
        block.word64(8).store(len as u64, Ordering::Relaxed);
        block.word64(16).store(0, Ordering::Release);
        Ok(block)
    }

    /// Maps a block created by another process, from its file descriptor.
    pub fn open(fd: OwnedFd) -> Result<Self, IpcError> {
        let size = nix::sys::stat::fstat(&fd)?.st_size as usize;
        if size < HEADER_BYTES {
            return Err(IpcError::Invalid(format!(
                "the block is {size} bytes, smaller than its header"
            )));
        }
        let header = Self::map(fd, HEADER_BYTES, 0)?;
        let (magic, len) = (
            header.word64(0).load(Ordering::Relaxed),
            header.word64(8).load(Ordering::Relaxed) as usize,
        );
        let fd = header
            .fd
            .try_clone()
            .map_err(|e| IpcError::Invalid(e.to_string()))?;
        drop(header);
        if magic != MAGIC {
            return Err(IpcError::Invalid("not a weight block (bad magic)".into()));
        }
        let map_len = HEADER_BYTES + 2 * buffer_bytes(len);
        if len == 0 || size < map_len {
            return Err(IpcError::Invalid(format!(
                "the header says {len} values, but the block is {size} bytes"
            )));
        }
        Self::map(fd, map_len, len)
    }

    fn map(fd: OwnedFd, map_len: usize, len: usize) -> Result<Self, IpcError> {
        let length = std::num::NonZeroUsize::new(map_len)
            .ok_or_else(|| IpcError::Invalid("empty mapping".into()))?;
        // SAFETY: a fresh shared mapping of a file we own, of its full size.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )?
        };
        Ok(WeightBlock {
            fd,
            map: ptr.cast(),
            map_len,
            len,
            next_buffer: 0,
        })
    }

    fn word64(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= HEADER_BYTES);
        // SAFETY: inside the mapped header, 8-byte aligned (the mapping is
        // page aligned), and only ever accessed atomically.
        unsafe { &*(self.map.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// Buffer `index` as 64-bit words (two values each; the last word's
    /// upper half is padding when `len` is odd).
    fn buffer(&self, index: usize) -> &[AtomicU64] {
        let offset = HEADER_BYTES + index * buffer_bytes(self.len);
        // SAFETY: inside the mapping (buffers are padded to 64 bytes), 8-byte
        // aligned, and only ever accessed atomically.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(offset) as *const AtomicU64,
                self.len.div_ceil(2),
            )
        }
    }

    fn seq(&self, index: usize) -> &AtomicU64 {
        self.word64(24 + 8 * index)
    }

    /// Values per weight set.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new descriptor of the block without close-on-exec, for a child
    /// process to inherit and pass to [`WeightBlock::open`]. Close it in the
    /// parent once the child has started.
    pub fn share(&self) -> Result<OwnedFd, IpcError> {
        Ok(nix::unistd::dup(&self.fd)?)
    }

    /// The block's own (close-on-exec) descriptor.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The latest published version, if any.
    pub fn latest_version(&self) -> Option<u64> {
        match self.word64(16).load(Ordering::Acquire) {
            0 => None,
            latest => Some(latest >> 1),
        }
    }

    /// Publishes `weights` as `version` (which must be greater than every
    /// version published before). Readers see either the previous set or
    /// this one, never a mix.
    pub fn publish(&mut self, weights: &[f32], version: u64) -> Result<(), IpcError> {
        if weights.len() != self.len {
            return Err(IpcError::Invalid(format!(
                "publishing {} values into a block of {}",
                weights.len(),
                self.len
            )));
        }
        if version == 0 || version >= 1 << 62 || self.latest_version().is_some_and(|v| version <= v)
        {
            return Err(IpcError::Invalid(format!(
                "version {version} does not follow the latest published version {:?}",
                self.latest_version()
            )));
        }
        let b = self.next_buffer;
        let seq = self.seq(b);
        let start = seq.load(Ordering::Relaxed);
        seq.store(start + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let words = self.buffer(b);
        let mut pairs = weights.chunks_exact(2);
        for (slot, pair) in words.iter().zip(&mut pairs) {
            let word = u64::from(pair[0].to_bits()) | (u64::from(pair[1].to_bits()) << 32);
            slot.store(word, Ordering::Relaxed);
        }
        if let [last] = pairs.remainder() {
            words[words.len() - 1].store(u64::from(last.to_bits()), Ordering::Relaxed);
        }
        self.word64(40 + 8 * b).store(version, Ordering::Relaxed);
        seq.store(start + 2, Ordering::Release);
        self.word64(16)
            .store((version << 1) | b as u64, Ordering::Release);
        self.next_buffer = 1 - b;
        Ok(())
    }

    /// Copies the latest published weights into `out` and returns their
    /// version, or `None` when nothing was published yet. Never blocks the
    /// writer; retries if the writer overwrote the buffer during the copy.
    pub fn read_into(&self, out: &mut [f32]) -> Result<Option<u64>, IpcError> {
        if out.len() != self.len {
            return Err(IpcError::Invalid(format!(
                "reading a block of {} values into {}",
                self.len,
                out.len()
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
            let words = self.buffer(b);
            let mut pairs = out.chunks_exact_mut(2);
            for (pair, slot) in (&mut pairs).zip(words) {
                let word = slot.load(Ordering::Relaxed);
                pair[0] = f32::from_bits(word as u32);
                pair[1] = f32::from_bits((word >> 32) as u32);
            }
            if let [last] = pairs.into_remainder() {
                *last = f32::from_bits(words[words.len() - 1].load(Ordering::Relaxed) as u32);
            }
            let version = self.word64(40 + 8 * b).load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == before {
                return Ok(Some(version));
            }
        }
    }
}

impl Drop for WeightBlock {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no reference
        // into it outlives `self`.
        unsafe {
            let _ = munmap(self.map.cast(), self.map_len);
        }
    }
}
