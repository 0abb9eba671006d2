//! The README's bound, on a loaded machine: every child of a run is gone
//! within 2 s of SIGKILL of `train`, also while the children are still
//! starting. (A file of its own: its busy loops would slow the other
//! tests of a binary, which run at the same time.)

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{process_state, Run};

/// CartPole with 2 worker processes, long enough never to end by itself.
fn config() -> String {
    r#"[env]
id = "CartPole-v1"
num_envs = 4

[ppo]
num_steps = 32

[run]
total_timesteps = 100000000
num_workers = 2
"#
    .to_string()
}

/// Busy loops on every core until dropped: a loaded machine.
struct Load(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores * 2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load(stop, threads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// The README promises children gone within 2 s of SIGKILL of `train`:
/// also while they are still starting (loading libraries) on a machine
/// whose every core is busy.
#[test]
fn children_die_within_2_s_of_train_being_killed_while_they_start_under_load() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let _load = Load::start();
    for delay_ms in [0, 30, 100, 300, 1000] {
        let mut run = Run::start("kill-starting", &config(), &[], &[]);
        // Some children exist (started, maybe not yet set up).
        let deadline = Instant::now() + Duration::from_secs(60);
        while run.children().is_empty() {
            assert!(Instant::now() < deadline, "no child\n{}", run.output());
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let children: BTreeSet<u32> = run.children().into_iter().map(|(p, _)| p).collect();
        run.signal("KILL", run.child.id());
        let killed = Instant::now();
        let _ = run.child.wait();
        loop {
            // Children started in the instant before the kill count too.
            let alive: Vec<u32> = children
                .iter()
                .chain(run.seen.iter())
                .copied()
                .filter(|p| *p != run.child.id())
                .filter(|p| !matches!(process_state(*p), None | Some('Z')))
                .collect();
            if alive.is_empty() {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(2),
                "after {delay_ms} ms: children {alive:?} still running 2 s after SIGKILL of train"
            );
            std::thread::sleep(Duration::from_millis(5));
            run.children();
        }
        for pid in run.seen.clone() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        }
        run.assert_nothing_left();
    }
}
