//! Child processes: how the supervisor starts them and what they do first.
//!
//! A child is the current executable run again with a role, so a user's own
//! binary, with its own registered envs, works the same way as `train`:
//!
//! ```text
//! <exe> --ferrorl-child <role> --run-dir <dir> --control-fd <fd> --parent <pid>
//! ```
//!
//! The only descriptor inherited is the control channel's end; the first
//! message on it is a [`Setup`] with the settings and, attached, the weight
//! block (and a worker's data channel to the learner). Before anything else
//! the child asks to be killed when the supervisor exits
//! ([`rl_ipc::process::die_with_parent`]), names itself for `ps`, and
//! ignores SIGINT: a Ctrl-C in the terminal reaches the whole process group,
//! and only the supervisor decides what it means.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rl_ipc::messages::{send_json, Setup};
use rl_ipc::{Channel, WeightBlock};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::settings::TrainSettings;

/// The first argument of a child process.
pub const CHILD_FLAG: &str = "--ferrorl-child";

/// Signals a child ignores from its first instruction: stops (SIGINT,
/// SIGTERM, SIGHUP) and checkpoint requests (SIGUSR1) are the supervisor's
/// to handle, for the whole run; SIGUSR2 is how the supervisor interrupts
/// the learner's update (the learner installs its handler).
pub const CHILD_IGNORES: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How long a child waits for its [`Setup`].
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the supervisor does to a child's process: a real one
/// (`std::process::Child`), or a stand-in in the supervisor's tests.
pub trait ChildProcess: Send {
    fn id(&self) -> u32;
    /// Its exit status once it has exited (and is reaped).
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>>;
    /// SIGKILL (a no-op once it has exited).
    fn kill(&mut self);
    /// SIGUSR2: the learner abandons its update at the next minibatch.
    fn interrupt(&mut self);
    /// Waits for it to exit and reaps it.
    fn wait(&mut self);
}

impl ChildProcess for Child {
    fn id(&self) -> u32 {
        Child::id(self)
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        Child::try_wait(self)
    }

    fn kill(&mut self) {
        let _ = Child::kill(self);
    }

    fn interrupt(&mut self) {
        if matches!(Child::try_wait(self), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(Child::id(self) as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2);
        }
    }

    fn wait(&mut self) {
        let _ = Child::wait(self);
    }
}

/// A started child: its process and its control channel.
pub struct ChildHandle {
    pub process: Box<dyn ChildProcess>,
    pub control: Channel,
}

impl ChildHandle {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGKILL (a no-op once it has exited).
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A handle never goes away with its process running or unreaped, whatever
/// path (an error, a panic) drops it.
impl Drop for ChildHandle {
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            self.process.kill();
        }
        self.process.wait();
    }
}

/// How the supervisor starts its children: [`ExeSpawner`] runs the current
/// executable again; the supervisor's tests play the children themselves.
pub trait Spawn: Send {
    /// Starts a child with `role` and sends it `setup` with `fds` attached.
    fn spawn(
        &mut self,
        role: &str,
        run_dir: &Path,
        setup: &Setup,
        fds: &[BorrowedFd<'_>],
    ) -> Result<ChildHandle, RuntimeError>;
}

/// Children as processes of the current executable ([`spawn_child`]).
pub struct ExeSpawner;

impl Spawn for ExeSpawner {
    fn spawn(
        &mut self,
        role: &str,
        run_dir: &Path,
        setup: &Setup,
        fds: &[BorrowedFd<'_>],
    ) -> Result<ChildHandle, RuntimeError> {
        spawn_child(role, run_dir, setup, fds)
    }
}

/// Starts the current executable as a child with `role` (a label for `ps`
/// and messages) and sends it `setup` with `fds` attached.
pub fn spawn_child(
    role: &str,
    run_dir: &Path,
    setup: &Setup,
    fds: &[BorrowedFd<'_>],
) -> Result<ChildHandle, RuntimeError> {
    // `/proc/self/exe` is the very file this process runs, even if it was
    // rebuilt or deleted since: a replacement worker never runs other code.
    let exe = std::env::current_exe()
        .map_err(|e| RuntimeError::Setup(format!("cannot find the running executable: {e}")))?;
    let (control, child_end) = Channel::pair()?;
    let inherited = child_end.inheritable()?;
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0(&exe)
        .arg(CHILD_FLAG)
        .arg(role)
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--control-fd")
        .arg(inherited.as_raw_fd().to_string())
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        // Acting needs no thread pools; keep any library that has one small.
        .env("OMP_NUM_THREADS", "1");
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure makes only
    // async-signal-safe system calls (sigaction, prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            // Ignored signals stay ignored across exec. A signal sent to
            // the whole process group (Ctrl-C in the terminal, `timeout`,
            // `kill -- -PGID`, systemd, Slurm) reaches every process of the
            // run: only the supervisor decides what it means.
            for signal in CHILD_IGNORES {
                libc::signal(signal, libc::SIG_IGN);
            }
            // Dies with the supervisor from this instant on (the setting
            // survives exec), so a child killed while it still loads its
            // libraries never outlives the run.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let process = command.spawn().map_err(|e| {
        RuntimeError::Setup(format!(
            "cannot start the {role} process ({}): {e}",
            exe.display()
        ))
    })?;
    drop(inherited);
    drop(child_end);
    let handle = ChildHandle {
        process: Box::new(process),
        control,
    };
    if let Err(e) = send_json(&handle.control, setup, fds) {
        return Err(RuntimeError::Setup(format!(
            "cannot set up the {role} process: {e}"
        )));
    }
    Ok(handle)
}

/// What a child needs besides its role's own setup.
pub struct ChildContext {
    pub control: Channel,
    pub settings: TrainSettings,
    pub run_dir: std::path::PathBuf,
    pub start_unix_s: f64,
    /// The weight block (the learner takes it: it is its only writer).
    pub block: Option<WeightBlock>,
    /// Descriptors attached to the setup after the weight block.
    pub extra_fds: Vec<OwnedFd>,
    /// The checkpoint a resumed run continues from.
    pub resume: Option<String>,
}

impl ChildContext {
    /// Seconds since the run started.
    pub fn elapsed_s(&self) -> f64 {
        (unix_now() - self.start_unix_s).max(0.0)
    }

    /// The weight block, to read.
    pub fn block(&self) -> Result<&WeightBlock, RuntimeError> {
        self.block
            .as_ref()
            .ok_or_else(|| RuntimeError::Setup("the setup carried no weight block".into()))
    }
}

/// Passes a role's result through, first telling the supervisor why it
/// failed (it may have no other way to know).
pub fn report_failure<M: serde::Serialize>(
    control: &Channel,
    result: Result<(), RuntimeError>,
    message: impl FnOnce(String) -> M,
) -> Result<(), RuntimeError> {
    if let Err(e) = &result {
        let _ = send_json(control, &message(e.to_string()), &[]);
    }
    result
}
