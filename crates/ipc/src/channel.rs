//! A message channel between two processes: one end of a Unix
//! `SOCK_SEQPACKET` socket pair. Each send is one whole message (the kernel
//! keeps the boundaries), may carry file descriptors, and a peer that exits,
//! however it exits, shows up as [`ChannelError::Closed`] on the next receive.
//!
//! Nothing here blocks without a bound: sends give up after a deadline when
//! the peer stops reading (a stopped or hung process), and receives take a
//! timeout.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use thiserror::Error;

/// The largest message a channel carries.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The most descriptors one message carries.
const MAX_FDS: usize = 4;
/// How long a send waits for a peer that does not read.
pub const SEND_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("the other process closed the channel (it exited)")]
    Closed,
    #[error("no message within {0:?}")]
    Timeout(Duration),
    #[error("the other process did not read for {0:?}")]
    SendBlocked(Duration),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("channel: {0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for ChannelError {
    fn from(e: Errno) -> Self {
        ChannelError::Io(e.into())
    }
}

/// One end of a message channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A received message: its bytes are in the caller's buffer.
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
}

impl Channel {
    /// Both ends of a new channel (close-on-exec).
    pub fn pair() -> Result<(Channel, Channel), ChannelError> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// A duplicate of this end without close-on-exec, for a child process to
    /// inherit (drop it in the parent once the child has started).
    pub fn inheritable(&self) -> Result<OwnedFd, ChannelError> {
        let raw = fcntl(self.fd.as_fd(), FcntlArg::F_DUPFD(3))?;
        // SAFETY: F_DUPFD returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Takes ownership of an inherited descriptor (see
    /// [`Channel::inheritable`]); marks it close-on-exec and checks that it
    /// is a socket.
    ///
    /// # Safety
    /// `fd` must be an open descriptor that nothing else in this process
    /// owns or closes.
    pub unsafe fn from_inherited(fd: RawFd) -> Result<Channel, ChannelError> {
        // SAFETY: the caller hands over ownership of an open descriptor.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let stat = nix::sys::stat::fstat(&owned)?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(ChannelError::Malformed(format!(
                "descriptor {fd} is not a socket"
            )));
        }
        fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        Ok(Channel { fd: owned })
    }

    /// Wraps a channel end received from another process.
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// The descriptor of this end, to hand over.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sends one message with `fds` attached; waits at most
    /// [`SEND_DEADLINE`] for room when the peer is not reading.
    pub fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        self.send_within(bytes, fds, SEND_DEADLINE)
    }

    /// [`Channel::send`] with an explicit deadline.
    pub fn send_within(
        &self,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Duration,
    ) -> Result<(), ChannelError> {
        if bytes.len() > MAX_MESSAGE || fds.len() > MAX_FDS {
            return Err(ChannelError::Malformed(format!(
                "a message of {} bytes and {} descriptors is over the limit ({MAX_MESSAGE}, {MAX_FDS})",
                bytes.len(),
                fds.len()
            )));
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
            vec![]
        } else {
            vec![ControlMessage::ScmRights(&raw)]
        };
        let start = Instant::now();
        loop {
            let iov = [IoSlice::new(bytes)];
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EAGAIN) => {
                    let left = deadline.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(ChannelError::SendBlocked(deadline));
                    }
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    poll_with(&mut fds, Some(left))?;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives one message into `buf` (resized to [`MAX_MESSAGE`]), waiting
    /// at most `timeout` (forever with `None`).
    pub fn recv(
        &self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Received, ChannelError> {
        if let Some(timeout) = timeout {
            if !self.wait_readable(timeout)? {
                return Err(ChannelError::Timeout(timeout));
            }
        }
        if buf.len() < MAX_MESSAGE {
            buf.resize(MAX_MESSAGE, 0);
        }
        // A peer that exits with messages of ours unread makes the kernel
        // report ECONNRESET on our next receive, before the messages the
        // peer sent us that are still queued (the error is reported once):
        // read on, so that a child's last words (the learner's `Stopped`)
        // are not lost to a message it never read.
        let mut reset_reported = false;
        loop {
            let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(buf)];
            let msg = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) if !reset_reported => {
                    reset_reported = true;
                    continue;
                }
                Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors
                    // for us; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let truncated = msg
                .flags
                .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
            let len = msg.bytes;
            if truncated {
                return Err(ChannelError::Malformed(format!(
                    "a message over {MAX_MESSAGE} bytes or {MAX_FDS} descriptors"
                )));
            }
            if len == 0 && fds.is_empty() {
                return Err(ChannelError::Closed);
            }
            return Ok(Received { len, fds });
        }
    }

    /// Waits until a message (or the peer's exit) can be received; false
    /// after `timeout`.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, ChannelError> {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        Ok(poll_with(&mut fds, Some(timeout))? > 0)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `poll` that retries on EINTR; `None` waits forever. Returns the number of
/// ready descriptors.
fn poll_with(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> Result<usize, ChannelError> {
    let start = Instant::now();
    loop {
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let ms = match left {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        // Sub-millisecond remainders round up, so a short timeout still waits.
        let ms = match left {
            Some(d) if !d.is_zero() && d < Duration::from_millis(1) => PollTimeout::from(1u8),
            _ => ms,
        };
        match poll(fds, ms) {
            Ok(n) => return Ok(n as usize),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until any of `fds` is readable (or hung up) or `timeout` passes;
/// returns which are.
pub fn wait_any(fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<Vec<bool>, ChannelError> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    poll_with(&mut polls, Some(timeout))?;
    Ok(polls
        .iter()
        .map(|p| {
            p.revents().is_some_and(|r| {
                r.intersects(
                    PollFlags::POLLIN
                        | PollFlags::POLLHUP
                        | PollFlags::POLLERR
                        | PollFlags::POLLNVAL,
                )
            })
        })
        .collect())
}
