//! The training loop, the one both `num_workers = 0` and `num_workers >= 1`
//! run: [`Trainer`] owns the schedule (updates, evaluation points,
//! checkpoints of every kind, progress, stops, the final policy) and gets
//! its experience from an [`ExperienceSource`] and its orders from a
//! [`Host`].
//!
//! ```text
//! each round:  host.poll()            stop? checkpoint now? a worker joined?
//!              source.start_round     act with the current weights (version = updates done)
//!              source.gather          the round's rollout [T, E]
//!              learner.update         all or nothing (abandoned on a stop, undone on divergence)
//!              source.commit_round    the envs' state now goes with the learner's
//!              train.csv row, host.updated
//!              evaluation point?      keep the state, host.evaluation_point -> SaveBest
//!              checkpoint due?        periodic, or final after the last update
//! at the end:  stop checkpoint (stopped or diverged), policy.safetensors,
//!              host.ended, then best-checkpoint requests until the host is done
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rl_algo::algorithm::{Algorithm, Stats, UpdateError};
use rl_algo::divergence::Divergence;
use rl_algo::exchange::gather_bytes;
use rl_algo::ppo::config::PpoConfig;
use rl_policy::{PolicySpec, Rollout};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::memory::RETAINED_EVAL_POINTS;
use crate::recording::train::TrainRecorder;
use crate::report::Progress;
use crate::settings::TrainSettings;
use crate::storage::checkpoint::{Checkpoint, CheckpointKind};
use crate::storage::checkpointer::Checkpointer;
use crate::storage::run_dir::{RunDir, POLICY_FILE};
use crate::training::evaluate::next_eval_after;
use crate::training::host::{Command, Ended, EvalPoint, Host, Outcome};
use crate::training::source::{ExperienceSource, Gathered};

/// The message of a diverged run: what went non-finite, where the last
/// finite state is, and the command that continues with other settings.
pub fn divergence_message(
    divergence: &Divergence,
    run_dir: &Path,
    policy: &Path,
    checkpoint: Option<&Path>,
    updates_done: u64,
) -> String {
    let example = divergence.suspects.first().and_then(|(key, _)| {
        let (table, field) = key.split_once('.')?;
        let defaults = serde_json::to_value(PpoConfig::default()).ok()?;
        let value = (table == "ppo")
            .then(|| defaults.get(field).cloned())
            .flatten()?;
        Some(format!(" --set {key}={value}"))
    });
    format!(
        "{divergence}. Nothing non-finite was published or saved: the weights after update {updates_done} are in {}{}; to continue from there with other settings: train --resume {}{}",
        policy.display(),
        checkpoint.map_or(String::new(), |c| format!(" and {}", c.display())),
        run_dir.display(),
        example.unwrap_or_else(|| match divergence.suspects.first() {
            // An off-policy table's key: its own name.
            Some((key, _)) => format!(" --set {key}=VALUE"),
            None => " --set ppo.KEY=VALUE".to_string(),
        })
    )
}

/// The returns of the last 100 finished training episodes.
#[derive(Debug, Default)]
pub struct RecentReturns(VecDeque<f64>);

impl RecentReturns {
    pub fn from_returns(returns: &[f64]) -> Self {
        RecentReturns(returns.iter().rev().take(100).rev().copied().collect())
    }

    pub fn to_vec(&self) -> Vec<f64> {
        self.0.iter().copied().collect()
    }

    pub fn extend(&mut self, episodes: &[rl_policy::EpisodeRecord]) {
        for episode in episodes {
            if self.0.len() == 100 {
                self.0.pop_front();
            }
            self.0.push_back(episode.episode_return);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.iter().sum::<f64>() / self.0.len() as f64)
    }
}

/// The mean of each statistic over the updates of one `train.csv` row
/// (non-finite values, such as an actor loss in an update that did not
/// train the actor, are left out; a statistic no update had is NaN).
#[derive(Debug, Default)]
struct RowMeans {
    sums: Vec<(&'static str, f64, u32)>,
    last_stale: f64,
}

impl RowMeans {
    fn add(&mut self, stats: &Stats) {
        if self.sums.is_empty() {
            self.sums = stats.0.iter().map(|(n, _)| (*n, 0.0, 0)).collect();
        }
        if let Some(stale) = stats.get("stale_chunks") {
            self.last_stale = stale;
        }
        for ((_, sum, count), (_, value)) in self.sums.iter_mut().zip(&stats.0) {
            if value.is_finite() {
                *sum += value;
                *count += 1;
            }
        }
    }

    fn take(&mut self) -> Stats {
        let means = self
            .sums
            .iter()
            .map(|(n, sum, count)| match *n {
                // A running count: its value at the row's last update.
                "stale_chunks" => (*n, self.last_stale),
                _ if *count > 0 => (*n, sum / f64::from(*count)),
                _ => (*n, f64::NAN),
            })
            .collect();
        self.sums.clear();
        Stats(means)
    }
}

/// This learner's place among data-parallel ranks (`mpirun -np K`):
/// rank 0 owns the run directory; the others write nothing there. A run
/// without MPI is rank 0 of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParallel {
    pub rank: usize,
    pub ranks: usize,
    /// The rank among those on this host: the learner takes CUDA device
    /// `local_rank % GPUs` (with `device = "auto"` or `"cuda"`).
    pub local_rank: usize,
}

impl DataParallel {
    pub const ALONE: DataParallel = DataParallel {
        rank: 0,
        ranks: 1,
        local_rank: 0,
    };

    /// Whether this rank writes the run directory.
    pub fn writes(&self) -> bool {
        self.rank == 0
    }
}

/// Which ranks take a checkpoint (see `Trainer::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranks {
    /// Every rank, at the same point.
    All,
    /// This rank alone (a checkpoint-now request).
    This,
}

/// What a command did to the round.
#[derive(PartialEq)]
enum Next {
    GoOn,
    Stop,
}

/// See the module documentation.
pub struct Trainer<'a> {
    settings: &'a TrainSettings,
    run_dir: &'a RunDir,
    spec: PolicySpec,
    learner: Box<dyn Algorithm>,
    checkpointer: Checkpointer,
    /// `train.csv`: rank 0's only.
    recorder: Option<TrainRecorder>,
    parallel: DataParallel,
    recent: RecentReturns,
    /// The state at recent evaluation points, oldest first.
    retained: VecDeque<Checkpoint>,
    start_unix_s: f64,
    /// Seconds spent collecting and updating, over the whole run.
    train_s: f64,
}

impl<'a> Trainer<'a> {
    /// A loop for `learner`, continuing from `resume` when given; the run
    /// started at `start_unix_s`. `train.csv` must exist.
    pub fn new(
        settings: &'a TrainSettings,
        run_dir: &'a RunDir,
        spec: PolicySpec,
        mut learner: Box<dyn Algorithm>,
        resume: Option<(&Path, &Checkpoint)>,
        start_unix_s: f64,
        parallel: DataParallel,
    ) -> Result<Self, RuntimeError> {
        let mut recent = RecentReturns::default();
        let mut train_s = 0.0;
        if let Some((path, checkpoint)) = resume {
            learner
                .restore(&checkpoint.learner)
                .map_err(|e| RuntimeError::Setup(format!("{}: {e}", path.display())))?;
            recent = RecentReturns::from_returns(&checkpoint.recent_returns);
            train_s = checkpoint.train_s;
        }
        Ok(Trainer {
            checkpointer: Checkpointer::new(run_dir, settings, &spec, parallel.ranks),
            recorder: match parallel.writes() {
                true => Some(TrainRecorder::new(
                    run_dir,
                    run_dir.append_train_csv()?,
                    settings.stat_names(),
                    start_unix_s,
                )?),
                false => None,
            },
            parallel,
            settings,
            run_dir,
            spec,
            learner,
            recent,
            retained: VecDeque::new(),
            start_unix_s,
            train_s,
        })
    }

    pub fn learner(&self) -> &dyn Algorithm {
        self.learner.as_ref()
    }

    /// The state now. With `Ranks::All` (a point every rank of a
    /// data-parallel run reaches together: periodic, final, stop and
    /// evaluation-point states) the envs' snapshots are every rank's, rank
    /// by rank, so that a resume continues every rank's envs exactly;
    /// otherwise (a checkpoint asked of one rank) this rank's alone.
    fn checkpoint(
        &mut self,
        kind: CheckpointKind,
        source: &dyn ExperienceSource,
        ranks: Ranks,
    ) -> Result<Checkpoint, RuntimeError> {
        let mut snapshots = source.snapshots();
        if let Some(x) = self
            .learner
            .exchange_mut()
            .filter(|x| ranks == Ranks::All && x.ranks() > 1)
        {
            snapshots = gather_bytes(x, &snapshots).map_err(|e| {
                RuntimeError::Failed(format!(
                    "cannot gather the ranks' env states for a checkpoint: {e}"
                ))
            })?;
        }
        let elapsed_s = (unix_now() - self.start_unix_s).max(0.0);
        Ok(self.checkpointer.build(
            kind,
            self.learner.as_ref(),
            snapshots,
            (elapsed_s, self.train_s),
            self.recent.to_vec(),
        ))
    }

    /// Writes a checkpoint (rank 0 only: `None` on the other ranks, which
    /// still take part in gathering the envs' state with `Ranks::All`).
    fn write(
        &mut self,
        kind: CheckpointKind,
        source: &dyn ExperienceSource,
        ranks: Ranks,
    ) -> Result<Option<PathBuf>, RuntimeError> {
        if !self.parallel.writes() && ranks == Ranks::This {
            return Ok(None);
        }
        let checkpoint = self.checkpoint(kind, source, ranks)?;
        if !self.parallel.writes() {
            return Ok(None);
        }
        Ok(Some(self.checkpointer.write(&checkpoint)?))
    }

    fn handle(
        &mut self,
        command: Command,
        source: &mut dyn ExperienceSource,
        host: &mut dyn Host,
    ) -> Result<Next, RuntimeError> {
        match command {
            Command::Stop => return Ok(Next::Stop),
            // Between updates: the state and the committed snapshots
            // belong together.
            Command::Checkpoint => {
                if let Some(path) = self.write(CheckpointKind::Periodic, source, Ranks::This)? {
                    host.checkpoint_written(&path)?;
                }
            }
            Command::SaveBest { version } => {
                match self.retained.iter().find(|c| c.learner.updates_done == version) {
                    Some(_) if !self.parallel.writes() => {}
                    Some(state) => {
                        let best = Checkpoint {
                            kind: CheckpointKind::Best,
                            ..state.clone()
                        };
                        self.checkpointer.write(&best)?;
                    }
                    None => host.warn(format!(
                        "the best evaluation so far is of version {version}, which the learner no longer holds (the evaluator is more than {RETAINED_EVAL_POINTS} evaluations behind): checkpoints/best.safetensors is not updated; best_policy.safetensors is"
                    ))?,
                }
            }
            Command::WorkerJoined {
                worker,
                generation,
                channel,
            } => source.join(worker, generation, channel)?,
        }
        Ok(Next::GoOn)
    }

    fn handle_all(
        &mut self,
        commands: Vec<Command>,
        source: &mut dyn ExperienceSource,
        host: &mut dyn Host,
    ) -> Result<Next, RuntimeError> {
        let mut next = Next::GoOn;
        for command in commands {
            if self.handle(command, source, host)? == Next::Stop {
                next = Next::Stop;
            }
        }
        Ok(next)
    }

    /// Trains until the budget is spent, a stop, or a divergence; see the
    /// module documentation.
    pub fn run(
        mut self,
        source: &mut dyn ExperienceSource,
        host: &mut dyn Host,
    ) -> Result<Outcome, RuntimeError> {
        // Every rank's envs step in a round.
        let steps_per_update = self.settings.steps_per_update() * self.parallel.ranks as u64;
        let num_updates = self.learner.num_updates();
        let total_env_steps = num_updates * steps_per_update;
        let interval = self.settings.eval.interval_steps;
        let mut next_eval =
            next_eval_after(self.learner.updates_done() * steps_per_update, interval);
        let mut rollout = Rollout::default();
        let rows_every = self.learner.updates_per_row().max(1);
        let mut row = RowMeans::default();
        let mut ended = Ended::Completed;
        let mut divergence = None;
        let mut exchange_failure = None;
        let mut update_s = 0.0;
        let mut end_checkpoint = None;
        'rounds: while self.learner.updates_done() < num_updates {
            let commands = host.poll()?;
            if self.handle_all(commands, source, host)? == Next::Stop {
                ended = Ended::Stopped;
                break;
            }
            let round_start = Instant::now();
            let version = self.learner.updates_done();
            source.start_round(
                version,
                &self.learner.acting_weights(),
                self.learner.obs_normalizer(),
                self.learner.exploration(),
                host,
            )?;
            loop {
                match source.gather(host, &mut rollout)? {
                    Gathered::Complete => break,
                    Gathered::Commands(commands) => {
                        if self.handle_all(commands, source, host)? == Next::Stop {
                            ended = Ended::Stopped;
                            break 'rounds;
                        }
                    }
                }
            }
            // A replaced worker's envs start new episodes.
            for envs in source.take_restarted_envs() {
                self.learner.envs_restarted(envs);
            }
            let abandon = || {
                // Between minibatches: a long update still says it is alive.
                let _ = host.alive();
                host.stop_now()
            };
            let update_start = Instant::now();
            let updated = self.learner.update(&rollout, &abandon);
            update_s += update_start.elapsed().as_secs_f64();
            let stats = match updated {
                Ok(mut stats) => {
                    if let Some((lag, stale)) = source.async_stats() {
                        stats.0.push(("policy_lag", lag as f64));
                        stats.0.push(("stale_chunks", stale as f64));
                    }
                    stats
                }
                Err(UpdateError::Abandoned) => {
                    ended = Ended::Stopped;
                    break;
                }
                // Back at the state before this update, which the envs'
                // state before this round goes with: saved below.
                Err(UpdateError::Diverged(d)) => {
                    divergence = Some(d);
                    break;
                }
                // Data-parallel ranks that cannot go on together: the state
                // before this update is saved below, then the run fails.
                Err(UpdateError::Exchange(e)) => {
                    exchange_failure = Some(e);
                    break;
                }
            };
            source.commit_round();
            self.train_s += round_start.elapsed().as_secs_f64();
            self.recent.extend(&rollout.episodes);
            let updates = self.learner.updates_done();
            let env_steps = updates * steps_per_update;
            let last = updates == num_updates;
            let evaluation_point = env_steps >= next_eval || last;
            row.add(&stats);
            // A row of train.csv every `rows_every` updates (off-policy
            // algorithms update after every chunk), and at evaluation points,
            // checkpoints and the end.
            let checkpoint_due = self.checkpointer.due(updates);
            if !(updates % rows_every == 0 || last || evaluation_point || checkpoint_due) {
                // The next round's poll sees a stop or a checkpoint request.
                continue;
            }
            let stats = row.take();
            let progress = Progress {
                elapsed: Duration::from_secs_f64((unix_now() - self.start_unix_s).max(0.0)),
                env_steps,
                total_env_steps,
                updates,
                steps_per_s: env_steps as f64 / self.train_s.max(1e-9),
                episode_return_mean: self.recent.mean(),
                last_eval_return: None,
            };
            if let Some(recorder) = &mut self.recorder {
                recorder.record(&progress, &stats)?;
            }
            host.updated(&progress, &stats, source.rejected())?;
            // An evaluation point: the state is kept in case its
            // evaluation turns out the best.
            if evaluation_point {
                if self.retained.len() == RETAINED_EVAL_POINTS {
                    self.retained.pop_front();
                }
                let state = self.checkpoint(CheckpointKind::Best, source, Ranks::All)?;
                self.retained.push_back(state);
                next_eval = next_eval_after(env_steps, interval);
                let weights = self.learner.acting_weights();
                let commands = host.evaluation_point(&EvalPoint {
                    version: updates,
                    env_steps,
                    weights: &weights,
                    obs_norm: self.learner.obs_normalizer(),
                })?;
                drop(weights);
                if self.handle_all(commands, source, host)? == Next::Stop {
                    ended = Ended::Stopped;
                }
            }
            if last {
                end_checkpoint = self.write(CheckpointKind::Final, source, Ranks::All)?;
            } else if checkpoint_due {
                self.write(CheckpointKind::Periodic, source, Ranks::All)?;
            }
            if ended == Ended::Stopped {
                break;
            }
        }
        if ended == Ended::Stopped || divergence.is_some() || exchange_failure.is_some() {
            end_checkpoint = self.write(CheckpointKind::Stop, source, Ranks::All)?;
        }
        if let Some(e) = exchange_failure {
            source.stop();
            return Err(RuntimeError::Failed(format!(
                "{e}; the state after update {} is in {}",
                self.learner.updates_done(),
                end_checkpoint.map_or_else(|| "no checkpoint".into(), |c| c.display().to_string())
            )));
        }
        source.stop();
        let policy_file = match self.parallel.writes() {
            true => self.run_dir.write_policy(
                &self.spec,
                &self.settings.env.id,
                &self.settings.env.kwargs,
                &self.learner.acting_weights(),
                self.learner.obs_normalizer(),
            )?,
            // Where rank 0 writes it.
            false => self.run_dir.path().join(POLICY_FILE),
        };
        if let Some(d) = divergence {
            ended = Ended::Diverged(divergence_message(
                &d,
                self.run_dir.path(),
                &policy_file,
                end_checkpoint.as_deref(),
                self.learner.updates_done(),
            ));
        }
        let outcome = Outcome {
            ended,
            env_steps: self.learner.updates_done() * steps_per_update,
            updates: self.learner.updates_done(),
            rejected: source.rejected(),
            policy_file,
            checkpoint: end_checkpoint,
            update_s,
            traffic: self.learner.exchange_traffic(),
        };
        host.ended(&outcome)?;
        if !matches!(outcome.ended, Ended::Diverged(_)) {
            // Best-checkpoint requests for the last evaluations may still
            // come: answered until the host says stop (or is gone).
            while let Some(command) = host.next_command()? {
                if self.handle(command, source, host)? == Next::Stop {
                    break;
                }
            }
        }
        Ok(outcome)
    }
}
