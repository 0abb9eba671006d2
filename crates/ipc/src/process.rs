//! What a child process does first, so that it never outlives the run.

use nix::sys::prctl;
use nix::sys::signal::Signal;

use crate::IpcError;

/// Asks the kernel to SIGKILL this process when its parent exits, however
/// the parent exits, then checks that the parent is still `expected_parent`:
/// if it died before the request was made, this process was already
/// re-parented and must not run on.
pub fn die_with_parent(expected_parent: u32) -> Result<(), IpcError> {
    prctl::set_pdeathsig(Signal::SIGKILL)?;
    let parent = nix::unistd::getppid().as_raw();
    if u32::try_from(parent).ok() != Some(expected_parent) {
        return Err(IpcError::Invalid(format!(
            "the parent process {expected_parent} is gone (the parent is now {parent})"
        )));
    }
    Ok(())
}

/// Names this process in `ps`, `top` and `/proc/PID/comm` (at most 15
/// bytes are kept).
pub fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    bytes.push(0);
    if let Ok(name) = std::ffi::CStr::from_bytes_with_nul(&bytes) {
        let _ = prctl::set_name(name);
    }
}
