//! Exit codes of `train` (and `evaluate`, `curves`): a run stopped by a
//! signal exits 128 + the signal's number, as a shell reports a process
//! killed by it.

pub const DONE: u8 = 0;
pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
/// SIGHUP (the terminal went away).
pub const HUNG_UP: u8 = 129;
/// SIGINT (Ctrl-C).
pub const INTERRUPTED: u8 = 130;
/// SIGTERM (`kill`, `timeout`, systemd, Slurm).
pub const TERMINATED: u8 = 143;
