//! A worker's rollout slot: one anonymous shared-memory region (memfd) that
//! the worker encodes each rollout's payload into, and the learner copies out
//! of after the worker's [`crate::messages::ToLearner::Rollout`] message
//! arrives with the header.
//!
//! A pipe would cost two kernel copies of every byte plus the decode; the
//! slot costs one copy on each side. The protocol keeps the two sides apart
//! in time (the worker writes only after the learner asked for a rollout, and
//! the learner reads only after the worker said it is complete); a worker
//! that breaks it can only garble values, which the learner checks after
//! copying them into its own memory.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use rl_policy::Rollout;

use crate::frame::{decode_payload, encode_payload, DecodeScratch, Sink, Source};
use crate::{FrameError, IpcError, RolloutHeader};

/// See the module documentation.
pub struct RolloutSlot {
    fd: OwnedFd,
    map: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the mapping is owned by the slot and lives until `drop`; writes
// need `&mut self`.
unsafe impl Send for RolloutSlot {}

impl RolloutSlot {
    /// A new slot of `capacity` bytes (at least 1).
    pub fn create(capacity: usize) -> Result<Self, IpcError> {
        let fd = memfd_create(c"ferrorl-rollout", MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, capacity.max(1) as i64)?;
        Self::map(fd, capacity.max(1))
    }

    /// Maps a slot created by another process, which must hold exactly
    /// `capacity` bytes (what the receiver expects for its sizes).
    pub fn open(fd: OwnedFd, capacity: usize) -> Result<Self, IpcError> {
        let size = nix::sys::stat::fstat(&fd)?.st_size;
        if size != capacity.max(1) as i64 {
            return Err(IpcError::Invalid(format!(
                "the rollout slot is {size} bytes, expected {}",
                capacity.max(1)
            )));
        }
        Self::map(fd, capacity.max(1))
    }

    fn map(fd: OwnedFd, capacity: usize) -> Result<Self, IpcError> {
        let length = std::num::NonZeroUsize::new(capacity)
            .ok_or_else(|| IpcError::Invalid("empty slot".into()))?;
        // SAFETY: a fresh shared mapping of a memfd we own, of its full size.
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
        Ok(RolloutSlot {
            fd,
            map: ptr.cast(),
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot's descriptor, to send to the reader.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Encodes `r`'s payload into the slot and returns the header that
    /// describes it.
    pub fn write(
        &mut self,
        worker: u32,
        generation: u32,
        weights_version: u64,
        r: &Rollout,
    ) -> Result<RolloutHeader, FrameError> {
        let header = RolloutHeader::for_rollout(worker, generation, weights_version, r)?;
        if header.payload_len > self.capacity as u64 {
            return Err(FrameError::Malformed(format!(
                "a payload of {} bytes does not fit the slot of {}",
                header.payload_len, self.capacity
            )));
        }
        // SAFETY: the mapping holds `capacity >= payload_len` bytes.
        let mut sink = unsafe { Sink::new(self.map.as_ptr(), header.payload_len as usize) };
        encode_payload(r, &header, &mut sink);
        Ok(header)
    }

    /// Copies and checks the payload a (decoded, checked) `header` describes
    /// into `out`.
    pub fn read(
        &self,
        header: &RolloutHeader,
        scratch: &mut DecodeScratch,
        out: &mut Rollout,
    ) -> Result<(), FrameError> {
        if header.payload_len > self.capacity as u64 {
            return Err(FrameError::Malformed(format!(
                "the header announces {} bytes, the slot holds {}",
                header.payload_len, self.capacity
            )));
        }
        // SAFETY: the mapping holds at least `payload_len` bytes and lives as
        // long as `self`; the source only copies out of it.
        let mut src = unsafe { Source::new(self.map.as_ptr(), header.payload_len as usize) };
        decode_payload(header, &mut src, scratch, out)
    }
}

impl Drop for RolloutSlot {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`.
        unsafe {
            let _ = munmap(self.map.cast(), self.capacity);
        }
    }
}
