//! `num_workers = 0`: the training loop with every env, the evaluation and
//! the recording in the calling process, and its host: the signal requests
//! of the command and its observer.

use std::os::fd::BorrowedFd;
use std::path::Path;

use rl_algo::algorithm::Stats;
use rl_algo::exchange::Exchange;
use rl_env::Registry;
use rl_policy::{Policy, PolicySpec};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::recording::eval::EvalRecorder;
use crate::report::{Ending, EvalResult, Observer, Progress, Requests, TrainSummary};
use crate::settings::TrainSettings;
use crate::spec::policy_spec;
use crate::storage::checkpoint::ResumeFrom;
use crate::storage::run_dir::{remove_stale_temporaries, train_csv_header, RunDir};
use crate::training::algorithm::new_algorithm;
use crate::training::collector::{build_collector, CollectorSource};
use crate::training::evaluate::evaluate;
use crate::training::host::{Command, Ended, EvalPoint, Host, Outcome};
use crate::training::trainer::{DataParallel, Trainer};

/// The calling process as the loop's host.
struct TerminalHost<'a> {
    registry: &'a Registry,
    settings: &'a TrainSettings,
    requests: &'a Requests,
    observer: &'a mut dyn Observer,
    /// eval.csv and the best policy: rank 0's only.
    recorder: Option<EvalRecorder<'a>>,
    /// Ranks stop together, when their updates vote (see
    /// `rl_algo::exchange`), never on their own between updates.
    data_parallel: bool,
    eval_policy: Policy,
    start_unix_s: f64,
    checkpoints_handled: usize,
    last_eval: Option<EvalResult>,
    progress: Option<Progress>,
}

impl Host for TerminalHost<'_> {
    fn poll(&mut self) -> Result<Vec<Command>, RuntimeError> {
        let mut commands = Vec::new();
        let requested = self.requests.checkpoints();
        if requested > self.checkpoints_handled {
            self.checkpoints_handled = requested;
            commands.push(Command::Checkpoint);
        }
        if self.requests.stops() > 0 && !self.data_parallel {
            commands.push(Command::Stop);
        }
        Ok(commands)
    }

    fn command_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn stop_now(&self) -> bool {
        self.requests.stops() > 0
    }

    fn alive(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn updated(
        &mut self,
        progress: &Progress,
        stats: &Stats,
        _rejected: u64,
    ) -> Result<(), RuntimeError> {
        let progress = Progress {
            last_eval_return: self.last_eval.as_ref().map(EvalResult::mean),
            ..*progress
        };
        self.observer.on_update(&progress, stats);
        self.progress = Some(progress);
        Ok(())
    }

    fn evaluation_point(&mut self, point: &EvalPoint<'_>) -> Result<Vec<Command>, RuntimeError> {
        let Some(recorder) = &mut self.recorder else {
            return Ok(Vec::new());
        };
        self.eval_policy.set_weights(point.weights)?;
        let result = evaluate(
            self.registry,
            self.settings,
            &mut self.eval_policy,
            point.obs_norm,
            point.env_steps,
            point.version,
        )?;
        let elapsed_s = (unix_now() - self.start_unix_s).max(0.0);
        let best = recorder.record(elapsed_s, &result, point.weights, point.obs_norm)?;
        if let Some(progress) = &mut self.progress {
            progress.last_eval_return = Some(result.mean());
            progress.elapsed = std::time::Duration::from_secs_f64(elapsed_s);
            self.observer.on_eval(progress, &result);
        }
        self.last_eval = Some(result);
        Ok(if best {
            vec![Command::SaveBest {
                version: point.version,
            }]
        } else {
            Vec::new()
        })
    }

    fn checkpoint_written(&mut self, path: &Path) -> Result<(), RuntimeError> {
        self.observer
            .on_message(&format!("train: checkpoint written: {}", path.display()));
        Ok(())
    }

    fn warn(&mut self, message: String) -> Result<(), RuntimeError> {
        self.observer.on_message(&format!("train: {message}"));
        Ok(())
    }

    fn replace_worker(&mut self, worker: u32, _: u32, _: String) -> Result<(), RuntimeError> {
        Err(RuntimeError::Failed(format!(
            "worker {worker} to replace in a run without worker processes"
        )))
    }

    fn ended(&mut self, _: &Outcome) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn next_command(&mut self) -> Result<Option<Command>, RuntimeError> {
        Ok(None)
    }
}

/// One rank of a data-parallel run: its place and the collectives it
/// shares with the others (`Send`: with worker processes they run on the
/// supervisor's relay thread, `processes::relay`).
pub struct Ranks {
    pub place: DataParallel,
    pub exchange: Box<dyn Exchange + Send>,
}

/// Trains in this process with the settings, writing the run directory,
/// until the step budget is spent or a stop is requested (the update in
/// progress is then abandoned); from a checkpoint when `resume` is given.
/// A checkpoint is written at each checkpoint-now request.
///
/// With `ranks`, this process is one rank of a data-parallel run: its envs
/// are global envs `rank * E ..`, its learner exchanges with the other
/// ranks at every minibatch, and only rank 0 writes the run directory and
/// evaluates. On resume every rank's envs continue from the checkpoint
/// (rank 0's checkpoints hold every rank's envs).
pub fn train_in_process(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
    ranks: Option<Ranks>,
) -> Result<TrainSummary, RuntimeError> {
    let envs = registry.make_vec_with(
        &settings.env.id,
        settings.env.num_envs,
        &settings.env.kwargs,
    )?;
    let spec: PolicySpec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    let place = ranks.as_ref().map_or(DataParallel::ALONE, |r| r.place);
    let mut learner = new_algorithm(settings, &spec, envs.action_space(), place.local_rank)?;
    let data_parallel = ranks.is_some();
    if let Some(ranks) = ranks {
        learner
            .set_exchange(ranks.exchange)
            .map_err(RuntimeError::Setup)?;
    }
    let elapsed0 = resume.map_or(0.0, |r| r.checkpoint.elapsed_s);
    let start_unix_s = unix_now() - elapsed0;
    if resume.is_none() && place.writes() {
        run_dir.create_csv_files(&train_csv_header(settings.stat_names()))?;
    }
    // Envs that cannot be snapshotted start new episodes on resume; the
    // command says so.
    let (collector, _) = build_collector(
        envs,
        spec.clone(),
        settings.run.seed,
        (place.rank * settings.env.num_envs) as u64,
        // Rank r's envs are the checkpoint's collector r (a checkpoint of
        // fewer ranks, or one rank 0 took alone, has none for it: new
        // episodes).
        resume.map(|r| (&r.checkpoint, place.rank)),
    )?;
    let mut source = CollectorSource::new(collector, settings.round_steps());
    let trainer = Trainer::new(
        settings,
        run_dir,
        spec.clone(),
        learner,
        resume.map(|r| (r.path.as_path(), &r.checkpoint)),
        start_unix_s,
        place,
    )?;
    let mut host = TerminalHost {
        registry,
        settings,
        requests,
        recorder: match place.writes() {
            true => Some(EvalRecorder::new(
                run_dir,
                run_dir.append_eval_csv()?,
                spec.clone(),
                &settings.env,
                start_unix_s,
            )?),
            false => None,
        },
        data_parallel,
        observer,
        eval_policy: Policy::new(spec)?,
        start_unix_s,
        checkpoints_handled: requests.checkpoints(),
        last_eval: None,
        progress: None,
    };
    let outcome = trainer.run(&mut source, &mut host)?;
    if place.writes() {
        remove_stale_temporaries(run_dir.path());
    }
    let ending = match outcome.ended {
        Ended::Completed => Ending::Completed,
        Ended::Stopped => Ending::Interrupted,
        Ended::Diverged(message) => return Err(RuntimeError::Diverged(message)),
    };
    Ok(TrainSummary {
        ending,
        env_steps: outcome.env_steps,
        updates: outcome.updates,
        last_eval: host.last_eval,
        restarts: 0,
        rejected_messages: 0,
        policy_file: Some(outcome.policy_file),
        checkpoint: outcome.checkpoint,
        update_s: Some(outcome.update_s),
        traffic: outcome.traffic,
    })
}
