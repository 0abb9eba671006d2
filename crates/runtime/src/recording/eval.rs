//! What evaluation records: each time one `eval.csv` row, the same numbers
//! as TensorBoard scalars `eval/<column>`, `curve.png` redrawn, and the best
//! weights so far kept in `best_policy.safetensors`. Used by the
//! single-process run and by the evaluator process alike.

use rl_metrics::tensorboard::EventWriter;
use rl_policy::{ObsNormalizer, PolicySpec};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::recording::train::{event_writer, write_scalars};
use crate::report::EvalResult;
use crate::storage::run_dir::{
    write_atomically, CsvWriter, PathError, RunDir, Value, BEST_POLICY_FILE, EVAL_CSV_HEADER,
};

/// The file the learning curve is drawn into.
pub const CURVE_FILE: &str = "curve.png";

/// Draws `curve.png` from the run's `eval.csv`.
pub fn draw_curve(run_dir: &RunDir, env_id: &str) -> Result<(), PathError> {
    let at = |path: std::path::PathBuf| move |source| PathError { path, source };
    let csv = run_dir.path().join("eval.csv");
    let table = rl_metrics::csv::read_table(&csv).map_err(at(csv.clone()))?;
    let curve = rl_metrics::plot::Curve {
        x: table.values("env_steps"),
        mean: table.values("return_mean"),
        min: table.values("return_min"),
        max: table.values("return_max"),
    };
    let name = run_dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let png = rl_metrics::plot::curve_png(&format!("{env_id}  {name}"), &curve)
        .map_err(at(run_dir.path().join(CURVE_FILE)))?;
    write_atomically(run_dir.path(), CURVE_FILE, &png).map_err(at(run_dir.path().join(CURVE_FILE)))
}

/// Writes evaluations: `eval.csv` rows, `eval/*` scalars, `curve.png` and
/// the best policy file.
pub struct EvalRecorder<'a> {
    run_dir: &'a RunDir,
    csv: CsvWriter,
    tb: EventWriter,
    start_unix_s: f64,
    spec: PolicySpec,
    env_id: String,
    env_kwargs: rl_env::Kwargs,
    pub best_return: Option<f64>,
}

impl<'a> EvalRecorder<'a> {
    /// `csv` is `eval.csv`, open to append; the best mean so far is read
    /// from it (an evaluator process that replaces another, or a resumed
    /// run, goes on from there).
    pub fn new(
        run_dir: &'a RunDir,
        csv: CsvWriter,
        spec: PolicySpec,
        env: &crate::settings::EnvSettings,
        start_unix_s: f64,
    ) -> Result<Self, PathError> {
        let table =
            rl_metrics::csv::read_table(&run_dir.path().join("eval.csv")).unwrap_or_default();
        let best_return = table
            .values("return_mean")
            .into_iter()
            .filter(|v| v.is_finite())
            .reduce(f64::max);
        Ok(EvalRecorder {
            run_dir,
            csv,
            tb: event_writer(run_dir, "eval", unix_now())?,
            start_unix_s,
            spec,
            env_id: env.id.clone(),
            env_kwargs: env.kwargs.clone(),
            best_return,
        })
    }

    /// Appends the row, its scalars and the curve; when the mean beats every
    /// earlier one, saves the weights as the best policy and returns true.
    pub fn record(
        &mut self,
        time_s: f64,
        result: &EvalResult,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
    ) -> Result<bool, RuntimeError> {
        let (min, max) = result
            .returns
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
        let row = [
            Value::Float(time_s),
            Value::Int(result.env_steps),
            Value::Int(result.policy_version),
            Value::Float(result.mean()),
            Value::Float(result.std()),
            Value::Float(min),
            Value::Float(max),
            Value::Int(result.returns.len() as u64),
        ];
        self.csv.row(&row)?;
        let wall = self.start_unix_s + time_s;
        write_scalars(
            &mut self.tb,
            "eval",
            EVAL_CSV_HEADER,
            &row,
            result.env_steps,
            wall,
        )
        .map_err(|source| PathError {
            path: self.tb.path().to_path_buf(),
            source,
        })?;
        draw_curve(self.run_dir, &self.env_id)?;
        let mean = result.mean();
        let best = self.best_return.is_none_or(|best| mean > best);
        if best {
            self.best_return = Some(mean);
            self.run_dir.write_policy_as(
                BEST_POLICY_FILE,
                &self.spec,
                &self.env_id,
                &self.env_kwargs,
                weights,
                obs_norm,
            )?;
        }
        Ok(best)
    }
}
