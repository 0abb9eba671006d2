//! Anonymous shared memory: a memfd mapped `MAP_SHARED`, read-write. It has
//! no name anywhere; it lives while some process holds its descriptor or a
//! mapping of it.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::IpcError;

/// One mapping of a memfd, unmapped on drop.
pub(crate) struct SharedMapping {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value until `drop`; what is done
// through the pointer is up to its owner (`WeightBlock`, `RolloutSlot`).
unsafe impl Send for SharedMapping {}
// SAFETY: as above; the owners only share atomic or read-only access.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// A new memfd of `len` bytes (zeroed, close-on-exec), mapped.
    pub fn create(name: &CStr, len: usize) -> Result<Self, IpcError> {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, len as i64)?;
        Self::map(fd, len)
    }

    /// Maps the first `len` bytes of a memfd another process created.
    pub fn map(fd: OwnedFd, len: usize) -> Result<Self, IpcError> {
        let length = std::num::NonZeroUsize::new(len)
            .ok_or_else(|| IpcError::Invalid("an empty shared mapping".into()))?;
        // SAFETY: a fresh shared mapping of a descriptor we own; the length
        // is checked against the file's size by the callers.
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
        Ok(SharedMapping {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// The size of the file behind a descriptor, in bytes.
    pub fn file_size(fd: &OwnedFd) -> Result<usize, IpcError> {
        let size = nix::sys::stat::fstat(fd)?.st_size;
        usize::try_from(size).map_err(|_| IpcError::Invalid(format!("a file of {size} bytes")))
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the descriptor back, unmapping.
    pub fn into_fd(self) -> Result<OwnedFd, IpcError> {
        self.fd
            .try_clone()
            .map_err(|e| IpcError::Invalid(e.to_string()))
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no reference
        // into it outlives its owner.
        unsafe {
            let _ = munmap(self.ptr.cast(), self.len);
        }
    }
}
