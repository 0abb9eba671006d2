//! `train --config FILE [--run-dir DIR] [--seed N] [--set table.key=value]...`
//! `train --resume RUN_DIR`

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ranks::{Plan, RankZero};
use clap::Parser;
use rl_algo::algorithm::Stats;
use rl_env::Registry;
use rl_runtime::{
    prepare_resume, run_child_if_requested, train_in_process, train_multi_process, Ending,
    EvalResult, Observer, Progress, Requests, RunDir, RunLock, RuntimeError, TrainSummary,
};

use crate::config;

pub use crate::exit;

/// Train a policy with PPO.
#[derive(Debug, Parser)]
#[command(name = "train", version, long_about = None)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["config", "resume"])))]
pub struct TrainArgs {
    /// The config file (TOML); see configs/ for examples.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Continues the run in RUN_DIR from its newest valid checkpoint, with
    /// the run's own config.toml; --set changes settings from there on
    /// (all but those the checkpoints depend on: env, network, num_steps,
    /// normalisation, workers, seed).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "run_dir", "seed"])]
    pub resume: Option<PathBuf>,
    /// Where to write the run (default: runs/<config name>-<UTC start time>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Overrides [run] seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Overrides one config value, e.g. --set ppo.learning_rate=3e-4 (repeatable).
    #[arg(long = "set", value_name = "TABLE.KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `runs/<config stem>-<stamp>`, with a suffix if that exists already.
fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    let base = format!("{stem}-{}", utc_stamp(SystemTime::now()));
    let mut candidate = Path::new("runs").join(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = Path::new("runs").join(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// Prints progress: a live line on a terminal, plain lines otherwise.
struct StatusLine {
    live: bool,
    last_plain: Instant,
    last_draw: Option<Instant>,
}

impl StatusLine {
    fn line(progress: &Progress) -> String {
        let eval = progress
            .last_eval_return
            .map_or("-".to_string(), |r| format!("{r:.1}"));
        let train = progress
            .episode_return_mean
            .map_or("-".to_string(), |r| format!("{r:.1}"));
        format!(
            "steps {}/{} ({:.0}%)  {:.0} steps/s  episode return {}  eval return {}  elapsed {:.1}s",
            progress.env_steps,
            progress.total_env_steps,
            100.0 * progress.env_steps as f64 / progress.total_env_steps.max(1) as f64,
            progress.steps_per_s,
            train,
            eval,
            progress.elapsed.as_secs_f64()
        )
    }

    fn finish(&self) {
        if self.live {
            errln!();
        }
    }
}

impl Observer for StatusLine {
    fn on_update(&mut self, progress: &Progress, _stats: &Stats) {
        // Redraw at most ten times a second, and always at the last update.
        let due = self
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            || progress.env_steps >= progress.total_env_steps;
        if self.live {
            if due {
                self.last_draw = Some(Instant::now());
                err!("\r\x1b[2K{}", Self::line(progress));
                let _ = std::io::stderr().flush();
            }
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            self.last_plain = Instant::now();
            outln!("{}", Self::line(progress));
        }
    }

    fn on_message(&mut self, message: &str) {
        if self.live {
            err!("\r\x1b[2K");
        }
        errln!("{message}");
        self.last_draw = None;
    }

    fn on_eval(&mut self, progress: &Progress, eval: &EvalResult) {
        if self.live {
            err!("\r\x1b[2K{}", Self::line(progress));
            let _ = std::io::stderr().flush();
        } else {
            outln!(
                "eval at {} steps: return {:.2} +- {:.2} over {} episodes",
                eval.env_steps,
                eval.mean(),
                eval.std(),
                eval.returns.len()
            );
        }
    }
}

/// Parses arguments, trains, and maps the outcome to an exit code. A
/// process that a run started as its learner, worker or evaluator (the
/// current executable run again with a role) does that role instead.
pub fn train_main(registry: &Registry) -> ExitCode {
    let registry = &crate::with_gymnasium(registry);
    if let Some(code) = run_child_if_requested(registry) {
        return ExitCode::from(code);
    }
    rl_runtime::ignore_file_size_signal();
    let args = match crate::parse_args::<TrainArgs>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    ExitCode::from(match rl_mpi::launcher() {
        None => run_train(registry, &args, None),
        #[cfg(feature = "mpi")]
        Some(launch) => crate::ranks::run_ranked(
            launch,
            |rank0| run_train(registry, &args, Some(rank0)),
            |ranks, plan| run_other_rank(registry, ranks, plan),
        ),
        #[cfg(not(feature = "mpi"))]
        Some(launch) => crate::ranks::run_ranked(launch, || run_train(registry, &args, None)),
    })
}

/// Runs `train` with parsed arguments; returns the exit code. With
/// `ranks`, this process is rank 0 of a data-parallel run (see
/// [`crate::ranks`]).
pub fn run_train(registry: &Registry, args: &TrainArgs, rank0: Option<RankZero<'_>>) -> u8 {
    let (loaded, run_dir, resume_notes) = match (&args.config, &args.resume) {
        (Some(config_path), _) => {
            let loaded = match config::load(config_path, &args.overrides, args.seed, registry) {
                Ok(loaded) => loaded,
                Err(message) => return usage_error(&message),
            };
            // Refused under MPI before the run directory is made.
            if let Some(r) = &rank0 {
                if let Err(message) = crate::ranks::check(&loaded.settings, r.ranks.place.ranks) {
                    return usage_error(&message);
                }
            }
            let run_path = args
                .run_dir
                .clone()
                .unwrap_or_else(|| default_run_dir(config_path));
            match RunDir::create(&run_path) {
                Ok(dir) => (loaded, dir, None),
                Err(e) => {
                    errln!("train: cannot create the run directory: {e}");
                    return exit::USAGE;
                }
            }
        }
        (None, Some(run)) => {
            let run_dir = match RunDir::existing(run) {
                Ok(dir) => dir,
                Err(e) => {
                    errln!("train: cannot resume: {e}");
                    return exit::USAGE;
                }
            };
            match config::load_for_resume(&run_dir, &args.overrides, registry) {
                Ok((loaded, notes)) => (loaded, run_dir, Some(notes)),
                Err(message) => return usage_error(&message),
            }
        }
        (None, None) => {
            errln!("train: give --config FILE or --resume RUN_DIR");
            return exit::USAGE;
        }
    };
    if let (Some(r), Some(_)) = (&rank0, &args.resume) {
        if let Err(message) = crate::ranks::check(&loaded.settings, r.ranks.place.ranks) {
            return usage_error(&message);
        }
    }
    outln!("{}", run_dir.path().display());
    let _lock = match RunLock::acquire(&run_dir) {
        Ok(lock) => lock,
        Err(e) => {
            errln!("train: {e}");
            return exit::FAILED;
        }
    };
    // Ranks of a data-parallel run (1 without MPI): an update is one round
    // of every rank's envs.
    let ranks_here = rank0.as_ref().map_or(1, |r| r.ranks.place.ranks);
    let resume = match resume_notes {
        None => {
            if let Err(e) = run_dir.write_config(&loaded.resolved_toml) {
                errln!("train: {e}");
                return exit::FAILED;
            }
            None
        }
        Some(notes) => match prepare_resume(registry, &loaded.settings, &run_dir, ranks_here) {
            Ok(plan) => {
                for r in &plan.rejected {
                    errln!("train: skipping {}: {}", r.path.display(), r.reason);
                }
                for repair in &plan.repairs {
                    errln!("train: {repair}");
                }
                let c = &plan.from.checkpoint;
                if plan.complete {
                    outln!(
                        "the run is complete ({} updates, {} env steps); nothing to resume (raise [ppo] total_timesteps with --set to train on)",
                        c.learner.updates_done,
                        c.env_steps
                    );
                    return exit::DONE;
                }
                // The config the run continues with, once the checkpoint is
                // known to be usable (a damaged one was kept aside).
                if notes.rewrite {
                    if let Err(e) =
                        config::replace_run_config(&run_dir, &loaded.resolved_toml, &notes)
                    {
                        errln!("train: {e}");
                        return exit::FAILED;
                    }
                }
                for note in &notes.messages {
                    errln!("train: {note}");
                }
                outln!(
                    "resuming from {} ({} of {} updates, {} env steps){}",
                    plan.from.path.display(),
                    c.learner.updates_done,
                    loaded.settings.num_updates_on(ranks_here),
                    c.env_steps,
                    match plan.dropped_rows {
                        (0, 0) => String::new(),
                        (t, e) => format!("; {t} train.csv and {e} eval.csv rows after it dropped"),
                    }
                );
                if c.collectors.iter().all(Vec::is_empty) {
                    outln!(
                        "{} cannot be snapshotted (a Python env's state usually cannot): the learner continues exactly where it was, the envs start new episodes",
                        loaded.settings.env.id
                    );
                }
                if loaded.settings.off_policy().is_some()
                    && c.learner.tensor("replay.rewards").is_none()
                {
                    outln!(
                        "the checkpoint holds no replay buffer ([{}] save_replay = false, the buffer was larger than save_replay_max_mb, or it is a best checkpoint): the learner continues with an empty one",
                        loaded.settings.run.algo
                    );
                }
                Some(plan.from)
            }
            Err(e) => {
                errln!("train: {}", e.to_string().replace('\n', "\ntrain: "));
                return exit::FAILED;
            }
        },
    };

    // The other ranks of a data-parallel run start from here, with what
    // this rank resolved.
    let ranks = rank0.map(|r| {
        (r.share)(&Plan {
            config_name: args
                .config
                .clone()
                .unwrap_or_else(|| run_dir.path().join("config.toml")),
            config: loaded.resolved_toml.clone(),
            run_dir: run_dir.path().to_path_buf(),
            checkpoint: resume.as_ref().map(|r| r.path.clone()),
        });
        r.ranks
    });
    if ranks.is_some() {
        if let Some(note) = crate::ranks::binding_note(&loaded.settings) {
            errln!("train: {note}");
        }
    }
    // One rank alone trains any algorithm (the off-policy ones do not
    // exchange, and need not: there is nobody to exchange with).
    let ranks = ranks.filter(|r| r.place.ranks > 1 || loaded.settings.off_policy().is_none());

    // SIGINT, SIGTERM, SIGHUP: abandon the update in progress, save the
    // state after the last one, exit 128 + the signal. A second one exits
    // at once. SIGUSR1: write a checkpoint now.
    let requests = Arc::new(Requests::default());
    let first_signal = Arc::new(AtomicI32::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let multi_process = loaded.settings.run.num_workers > 0;
    let handlers = install_signal_handlers(
        multi_process,
        &requests,
        &first_signal,
        &finished,
        run_dir.path(),
    );
    if let Err(e) = handlers {
        errln!("train: cannot install the signal handlers: {e}");
        return exit::FAILED;
    }

    let mut status = StatusLine {
        live: std::io::stderr().is_terminal(),
        last_plain: Instant::now(),
        last_draw: None,
    };
    let result = train_here(
        registry,
        &loaded.settings,
        &run_dir,
        resume.as_ref(),
        &requests,
        &mut status,
        ranks,
    );
    // What the run saved is saved: a second signal from now on only ends
    // the process, and the messages below say what is where.
    finished.store(true, Ordering::SeqCst);
    status.finish();
    match result {
        Ok(summary) => {
            let eval = summary
                .last_eval
                .as_ref()
                .map_or("no evaluation".to_string(), |e| {
                    format!("last eval return {:.2}", e.mean())
                });
            let faults = faults_note(&summary);
            if let (Some(traffic), Some(update_s)) = (summary.traffic, summary.update_s) {
                outln!(
                    "{}",
                    crate::ranks::traffic_line(&summary, traffic, update_s)
                );
            }
            match (summary.ending, &summary.policy_file) {
                (Ending::Completed, Some(policy)) => {
                    outln!(
                        "done: {} env steps, {} updates, {eval}{faults}; policy in {}",
                        summary.env_steps,
                        summary.updates,
                        policy.display()
                    );
                    exit::DONE
                }
                (Ending::Completed, None) => {
                    errln!("train: the run ended without writing its policy file");
                    exit::FAILED
                }
                (Ending::Interrupted, saved) => {
                    match saved {
                        Some(policy) => outln!(
                            "interrupted after {} env steps ({} updates){faults}; weights saved in {}{}",
                            summary.env_steps,
                            summary.updates,
                            policy.display(),
                            summary
                                .checkpoint
                                .as_ref()
                                .map_or(String::new(), |c| format!(", state in {}", c.display()))
                        ),
                        None => outln!(
                            "stopped at once after {} env steps ({} updates){faults}: nothing was saved at the stop; {}",
                            summary.env_steps,
                            summary.updates,
                            rl_runtime::storage::checkpoint_dir::newest_checkpoint_note(run_dir.path())
                        ),
                    }
                    signal_exit_code(first_signal.load(Ordering::SeqCst))
                }
            }
        }
        Err(RuntimeError::Diverged(message)) => {
            errln!("train: {message}");
            exit::FAILED
        }
        Err(e) => {
            errln!("train: training failed: {e}");
            exit::FAILED
        }
    }
}

/// A rank other than 0 of a data-parallel run (`crate::ranks`): the same
/// config and checks as rank 0, then training in lockstep with it; it
/// writes nothing (rank 0 owns the run directory) and prints only errors.
#[cfg(feature = "mpi")]
fn run_other_rank(registry: &Registry, ranks: rl_runtime::Ranks, plan: Plan) -> u8 {
    let rank = ranks.place.rank;
    let loaded = match config::load_text(&plan.config_name, &plan.config, &[], None, registry) {
        Ok(loaded) => loaded,
        Err(message) => {
            errln!(
                "train (rank {rank}): {}",
                message.replace('\n', "\ntrain: ")
            );
            return exit::USAGE;
        }
    };
    // The learner's state at rank 0's checkpoint, and this rank's envs
    // (every rank's are there; from a checkpoint of fewer ranks, or one
    // rank 0 took alone, they start new episodes).
    let resume = match &plan.checkpoint {
        Some(path) => match rl_runtime::storage::checkpoint::read_checkpoint(path) {
            Ok(checkpoint) => Some(rl_runtime::storage::checkpoint::ResumeFrom {
                path: path.clone(),
                checkpoint,
            }),
            Err(e) => {
                errln!("train (rank {rank}): cannot resume: {e}");
                return exit::FAILED;
            }
        },
        None => None,
    };
    // Rank 0's directory, named only in messages.
    let run_dir = RunDir::elsewhere(plan.run_dir);
    let requests = Arc::new(Requests::default());
    let first_signal = Arc::new(AtomicI32::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let multi_process = loaded.settings.run.num_workers > 0;
    if let Err(e) = install_signal_handlers(
        multi_process,
        &requests,
        &first_signal,
        &finished,
        run_dir.path(),
    ) {
        errln!("train (rank {rank}): cannot install the signal handlers: {e}");
        return exit::FAILED;
    }
    let mut quiet = QuietRank { rank };
    let result = train_here(
        registry,
        &loaded.settings,
        &run_dir,
        resume.as_ref(),
        &requests,
        &mut quiet,
        Some(ranks),
    );
    finished.store(true, Ordering::SeqCst);
    match result {
        Ok(summary) => match summary.ending {
            Ending::Completed => exit::DONE,
            Ending::Interrupted => signal_exit_code(first_signal.load(Ordering::SeqCst)),
        },
        Err(e) => {
            errln!("train (rank {rank}): training failed: {e}");
            exit::FAILED
        }
    }
}

/// The observer of ranks other than 0: messages only, with the rank.
#[cfg(feature = "mpi")]
struct QuietRank {
    rank: usize,
}

#[cfg(feature = "mpi")]
impl Observer for QuietRank {
    fn on_update(&mut self, _: &Progress, _: &rl_algo::algorithm::Stats) {}
    fn on_eval(&mut self, _: &Progress, _: &EvalResult) {}
    fn on_message(&mut self, message: &str) {
        errln!("(rank {}) {message}", self.rank);
    }
}

/// Trains with worker processes (`num_workers >= 1`) or in this process,
/// as this rank of a data-parallel run with `ranks`.
fn train_here(
    registry: &Registry,
    settings: &rl_runtime::TrainSettings,
    run_dir: &RunDir,
    resume: Option<&rl_runtime::storage::checkpoint::ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
    ranks: Option<rl_runtime::Ranks>,
) -> Result<TrainSummary, RuntimeError> {
    match settings.run.num_workers > 0 {
        true => train_multi_process(
            registry, settings, run_dir, resume, requests, observer, ranks,
        ),
        false => train_in_process(
            registry, settings, run_dir, resume, requests, observer, ranks,
        ),
    }
}

/// Prints a usage or config error (every line prefixed) and gives its code.
fn usage_error(message: &str) -> u8 {
    errln!("train: {}", message.replace('\n', "\ntrain: "));
    exit::USAGE
}

/// The exit code of a run stopped by `signal` (128 + its number).
fn signal_exit_code(signal: i32) -> u8 {
    match signal {
        signal_hook::consts::SIGHUP => exit::HUNG_UP,
        signal_hook::consts::SIGTERM => exit::TERMINATED,
        _ => exit::INTERRUPTED,
    }
}

/// ", 2 processes restarted, 1 worker message rejected", or nothing.
fn faults_note(summary: &TrainSummary) -> String {
    let mut note = String::new();
    if summary.restarts > 0 {
        let s = if summary.restarts == 1 { "" } else { "es" };
        note += &format!(", {} process{s} restarted", summary.restarts);
    }
    if summary.rejected_messages > 0 {
        let s = if summary.rejected_messages == 1 {
            ""
        } else {
            "s"
        };
        note += &format!(", {} worker message{s} rejected", summary.rejected_messages);
    }
    note
}

/// Counts stop signals (SIGINT, SIGTERM, SIGHUP) and checkpoint requests
/// (SIGUSR1) in `requests`, and remembers the first stop signal. In a
/// single-process run a second stop signal exits at once, saying so; the
/// supervisor of a multi-process run reads the count itself, so that it
/// can kill and reap its processes before exiting.
fn install_signal_handlers(
    multi_process: bool,
    requests: &Arc<Requests>,
    first_signal: &Arc<AtomicI32>,
    finished: &Arc<AtomicBool>,
    run_dir: &Path,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let message: Arc<[u8]> = format!(
        "\ntrain: second interrupt: exiting at once, without saving the updates since the last checkpoint (train --resume {} continues from it)\n",
        run_dir.display()
    )
    .into_bytes()
    .into();
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let requests = Arc::clone(requests);
        let first = Arc::clone(first_signal);
        let message = Arc::clone(&message);
        let finished = Arc::clone(finished);
        // SAFETY: the handler touches only atomics and makes only
        // async-signal-safe calls (write, _exit).
        unsafe {
            signal_hook::low_level::register(signal, move || {
                let _ = first.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                let before = requests.stops.fetch_add(1, Ordering::SeqCst);
                if !multi_process && before >= 1 {
                    if !finished.load(Ordering::SeqCst) {
                        libc::write(2, message.as_ptr().cast(), message.len());
                    }
                    libc::_exit(i32::from(signal_exit_code(first.load(Ordering::SeqCst))));
                }
            })?;
        }
    }
    let requests = Arc::clone(requests);
    // SAFETY: the handler only increments an atomic counter.
    unsafe {
        signal_hook::low_level::register(SIGUSR1, move || {
            requests.checkpoints.fetch_add(1, Ordering::SeqCst);
        })?;
    }
    Ok(())
}
