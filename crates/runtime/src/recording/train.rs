//! What training records as it goes: a `train.csv` row per update, and the
//! same numbers as TensorBoard scalars `train/<column>` (step = env steps);
//! and the TensorBoard files rebuilt from the CSV files on resume.

use std::path::PathBuf;

use rl_algo::algorithm::Stats;
use rl_metrics::tensorboard::EventWriter;

use crate::clock::unix_now;
use crate::report::Progress;
use crate::storage::run_dir::{
    train_csv_header, CsvWriter, PathError, RunDir, Value, EVAL_CSV_HEADER,
};

fn io_at(path: PathBuf) -> impl FnOnce(std::io::Error) -> PathError {
    move |source| PathError { path, source }
}

/// Opens a TensorBoard event file for `role` ("train", "eval") in the run
/// directory.
pub fn event_writer(
    run_dir: &RunDir,
    role: &str,
    now_unix_s: f64,
) -> Result<EventWriter, PathError> {
    EventWriter::create(
        run_dir.path(),
        &format!("{}.{role}", std::process::id()),
        now_unix_s,
    )
    .map_err(io_at(run_dir.path().to_path_buf()))
}

/// The TensorBoard scalars of one CSV row: every column but `env_steps`
/// (the step), tagged `<prefix>/<column>`.
pub fn row_scalars(prefix: &str, header: &str, row: &[f64]) -> Vec<(String, f64)> {
    header
        .split(',')
        .zip(row)
        .filter(|(name, _)| *name != "env_steps")
        .map(|(name, v)| (format!("{prefix}/{name}"), *v))
        .collect()
}

fn value_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
    }
}

/// Writes `row` as scalars at `step`.
pub fn write_scalars(
    tb: &mut EventWriter,
    prefix: &str,
    header: &str,
    row: &[Value],
    step: u64,
    wall_time: f64,
) -> std::io::Result<()> {
    let values: Vec<f64> = row.iter().map(value_f64).collect();
    let scalars = row_scalars(prefix, header, &values);
    let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    tb.scalars(step as i64, wall_time, &refs)
}

/// `train.csv` rows and `train/*` scalars.
pub struct TrainRecorder {
    csv: CsvWriter,
    tb: EventWriter,
    start_unix_s: f64,
    tb_path: PathBuf,
    /// `train.csv`'s header (see [`train_csv_header`]).
    header: String,
}

impl TrainRecorder {
    /// `csv` is `train.csv`, open to append, whose columns name
    /// `stat_names` (the algorithm's); the run started at `start_unix_s`
    /// (what `time_s` counts from).
    pub fn new(
        run_dir: &RunDir,
        csv: CsvWriter,
        stat_names: &[&str],
        start_unix_s: f64,
    ) -> Result<Self, PathError> {
        let tb = event_writer(run_dir, "train", unix_now())?;
        Ok(TrainRecorder {
            tb_path: tb.path().to_path_buf(),
            csv,
            tb,
            start_unix_s,
            header: train_csv_header(stat_names),
        })
    }

    pub fn record(&mut self, progress: &Progress, stats: &Stats) -> Result<(), PathError> {
        let row = train_row(progress, stats);
        self.csv.row(&row)?;
        let wall = self.start_unix_s + progress.elapsed.as_secs_f64();
        write_scalars(
            &mut self.tb,
            "train",
            &self.header,
            &row,
            progress.env_steps,
            wall,
        )
        .map_err(io_at(self.tb_path.clone()))
    }
}

/// Rewrites the TensorBoard files of a run from its CSV files (after they
/// were cut back to a checkpoint on resume): one new file per CSV holds
/// every row again, and only once both are written are the old event files
/// removed, so curves continue without a duplicate and a failed write (a
/// full disk) leaves the old files as they were.
pub fn rebuild_tensorboard(
    run_dir: &RunDir,
    start_unix_s: f64,
    stat_names: &[&str],
) -> Result<(), PathError> {
    let train_header = train_csv_header(stat_names);
    let dir = run_dir.path();
    let old: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_at(dir.to_path_buf()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("tfevents"))
        .map(|e| e.path())
        .collect();
    let mut written: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (file, prefix, header) in [
            ("train.csv", "train", train_header.as_str()),
            ("eval.csv", "eval", EVAL_CSV_HEADER),
        ] {
            let path = dir.join(file);
            let table = rl_metrics::csv::read_table(&path).map_err(io_at(path.clone()))?;
            let suffix = format!("rebuilt-{}.{prefix}", std::process::id());
            let mut tb = EventWriter::create(dir, &suffix, start_unix_s)
                .map_err(io_at(dir.to_path_buf()))?;
            written.push(tb.path().to_path_buf());
            let (Some(steps), Some(time)) = (table.column("env_steps"), table.column("time_s"))
            else {
                continue;
            };
            for row in &table.rows {
                let scalars = row_scalars(prefix, header, row);
                let refs: Vec<(&str, f64)> =
                    scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                tb.scalars(row[steps] as i64, start_unix_s + row[time], &refs)
                    .map_err(io_at(tb.path().to_path_buf()))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    for path in old.iter().filter(|p| !written.contains(p)) {
        std::fs::remove_file(path).map_err(io_at(path.clone()))?;
    }
    Ok(())
}

/// One `train.csv` row.
pub fn train_row(progress: &Progress, stats: &Stats) -> Vec<Value> {
    let mut row = vec![
        Value::Float(progress.elapsed.as_secs_f64()),
        Value::Int(progress.env_steps),
        Value::Int(progress.updates),
        Value::Float(progress.steps_per_s),
    ];
    row.extend(stats.0.iter().map(|(_, v)| Value::Float(*v)));
    row.push(Value::Float(
        progress.episode_return_mean.unwrap_or(f64::NAN),
    ));
    row
}
