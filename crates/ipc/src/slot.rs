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

use std::os::fd::{BorrowedFd, OwnedFd};

use rl_policy::Rollout;

use crate::frame::{decode_payload, encode_payload, DecodeScratch, Sink, Source};
use crate::shm::SharedMapping;
use crate::{FrameError, IpcError, RolloutHeader};

/// See the module documentation.
pub struct RolloutSlot {
    mapping: SharedMapping,
}

impl RolloutSlot {
    /// A new slot of `capacity` bytes (at least 1).
    pub fn create(capacity: usize) -> Result<Self, IpcError> {
        Ok(RolloutSlot {
            mapping: SharedMapping::create(c"ferrorl-rollout", capacity.max(1))?,
        })
    }

    /// Maps a slot created by another process, which must hold exactly
    /// `capacity` bytes (what the receiver expects for its sizes).
    pub fn open(fd: OwnedFd, capacity: usize) -> Result<Self, IpcError> {
        let size = SharedMapping::file_size(&fd)?;
        if size != capacity.max(1) {
            return Err(IpcError::Invalid(format!(
                "the rollout slot is {size} bytes, expected {}",
                capacity.max(1)
            )));
        }
        Ok(RolloutSlot {
            mapping: SharedMapping::map(fd, size)?,
        })
    }

    pub fn capacity(&self) -> usize {
        self.mapping.len()
    }

    /// The slot's descriptor, to send to the reader.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.mapping.fd()
    }

    /// Encodes `r`'s payload and, after it, `snapshot` into the slot, and
    /// returns the header that describes them.
    pub fn write(
        &mut self,
        worker: u32,
        generation: u32,
        weights_version: u64,
        r: &Rollout,
        snapshot: &[u8],
    ) -> Result<RolloutHeader, FrameError> {
        let mut header = RolloutHeader::for_rollout(worker, generation, weights_version, r)?;
        header.snapshot_len = snapshot.len() as u64;
        let total = header.payload_len + header.snapshot_len;
        if total > self.capacity() as u64 {
            return Err(FrameError::Malformed(format!(
                "a payload of {} bytes and a snapshot of {} do not fit the slot of {}",
                header.payload_len,
                header.snapshot_len,
                self.capacity()
            )));
        }
        // SAFETY: the mapping holds `capacity >= payload_len` bytes.
        let mut sink = unsafe { Sink::new(self.mapping.as_ptr(), header.payload_len as usize) };
        encode_payload(r, &header, &mut sink);
        // SAFETY: the snapshot fits after the payload (checked above); the
        // source is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                snapshot.as_ptr(),
                self.mapping.as_ptr().add(header.payload_len as usize),
                snapshot.len(),
            );
        }
        Ok(header)
    }

    /// Copies and checks the payload a (decoded, checked) `header` describes
    /// into `out`, and the snapshot after it into `snapshot` (opaque bytes:
    /// the worker that restores them checks them).
    pub fn read(
        &self,
        header: &RolloutHeader,
        scratch: &mut DecodeScratch,
        out: &mut Rollout,
        snapshot: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let total = header.payload_len.saturating_add(header.snapshot_len);
        if total > self.capacity() as u64 {
            return Err(FrameError::Malformed(format!(
                "the header announces {} + {} bytes, the slot holds {}",
                header.payload_len,
                header.snapshot_len,
                self.capacity()
            )));
        }
        // SAFETY: the mapping holds at least `payload_len` bytes and lives as
        // long as `self`; the source only copies out of it.
        let mut src = unsafe { Source::new(self.mapping.as_ptr(), header.payload_len as usize) };
        decode_payload(header, &mut src, scratch, out)?;
        snapshot.resize(header.snapshot_len as usize, 0);
        // SAFETY: in bounds (checked above); `snapshot` is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.mapping.as_ptr().add(header.payload_len as usize),
                snapshot.as_mut_ptr(),
                snapshot.len(),
            );
        }
        Ok(())
    }
}
