//! The memory a learner process shares with its rank process for the
//! collectives of a data-parallel run (`mpirun -np K train` with worker
//! processes). The learner is a child of the rank process, and a child is
//! not an MPI process: it writes a collective's operands here, asks its
//! rank process ([`crate::messages::ToRelay`]), which runs the collective
//! over MPI on this memory in place, and reads the result here once it is
//! answered ([`crate::messages::FromRelay`]).
//!
//! ```text
//! offset 0   operands: n values (f32, f64 or u64, native byte order)
//!            after the answer: the result, from offset 0
//!              sum:    n values, the element-wise sum over ranks
//!              gather: K * n values, every rank's n in rank order
//! ```
//!
//! The learner creates the block and grows it (a new memfd, attached to
//! the request that first needs it); the two sides never touch it at the
//! same time (the learner waits for the answer).

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::shm::SharedMapping;
use crate::IpcError;

/// See the module documentation.
pub struct ExchangeBlock {
    mapping: SharedMapping,
}

impl ExchangeBlock {
    /// A new block of at least `bytes` bytes (whole pages).
    pub fn create(bytes: usize) -> Result<Self, IpcError> {
        let len = bytes.max(1).div_ceil(4096) * 4096;
        Ok(ExchangeBlock {
            mapping: SharedMapping::create(c"ferrorl-exchange", len)?,
        })
    }

    /// Maps a block the learner created.
    pub fn open(fd: OwnedFd) -> Result<Self, IpcError> {
        let size = SharedMapping::file_size(&fd)?;
        if size == 0 || size % 4096 != 0 {
            return Err(IpcError::Invalid(format!(
                "an exchange block of {size} bytes (whole pages expected)"
            )));
        }
        Ok(ExchangeBlock {
            mapping: SharedMapping::map(fd, size)?,
        })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mapping.len() == 0
    }

    /// The descriptor, to attach to a request.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.mapping.fd()
    }

    /// The first `n` values as float32.
    pub fn f32s(&mut self, n: usize) -> Result<&mut [f32], IpcError> {
        self.values(n)
    }

    /// The first `n` values as float64.
    pub fn f64s(&mut self, n: usize) -> Result<&mut [f64], IpcError> {
        self.values(n)
    }

    /// The first `n` values as u64.
    pub fn u64s(&mut self, n: usize) -> Result<&mut [u64], IpcError> {
        self.values(n)
    }

    fn values<T: Plain>(&mut self, n: usize) -> Result<&mut [T], IpcError> {
        let bytes = n.checked_mul(std::mem::size_of::<T>());
        if bytes.is_none_or(|b| b > self.mapping.len()) {
            return Err(IpcError::Invalid(format!(
                "{n} values of {} bytes do not fit the {}-byte exchange block",
                std::mem::size_of::<T>(),
                self.mapping.len()
            )));
        }
        // SAFETY: the mapping is page-aligned (so aligned for T), holds at
        // least n * size_of::<T>() bytes (checked above) and lives as long
        // as `self`, borrowed mutably; every bit pattern is a valid T
        // (`Plain`). The other process touches it only while this one
        // waits for its answer.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.mapping.as_ptr().cast::<T>(), n) })
    }
}

/// Types for which every bit pattern is a value.
trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for f64 {}
impl Plain for u64 {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_mappings_see_the_same_values_and_sizes_are_checked() {
        let mut a = ExchangeBlock::create(10).unwrap();
        assert_eq!(a.len(), 4096);
        let fd = a.fd().try_clone_to_owned().unwrap();
        let mut b = ExchangeBlock::open(fd).unwrap();
        a.f64s(3).unwrap().copy_from_slice(&[1.5, -2.0, 3.25]);
        assert_eq!(b.f64s(3).unwrap(), &[1.5, -2.0, 3.25]);
        b.f32s(2).unwrap()[1] = 7.0;
        assert_eq!(a.f32s(2).unwrap()[1], 7.0);
        assert!(a.u64s(513).is_err());
        assert!(a.u64s(512).is_ok());
    }
}
