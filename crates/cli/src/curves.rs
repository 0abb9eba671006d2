//! `curves RUN_DIR... [--snapshot COLSxROWS]`: a live terminal chart of one
//! or more runs (evaluation mean return and training episode return against
//! env steps, or against time), following the CSV files as `train` writes
//! them, with the latest numbers and each run's config. Keys: `t` switches
//! the x axis between env steps and time, `q` (or Esc, Ctrl-C) quits.
//! `--snapshot` prints one frame as text instead (for scripts and tests).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::backend::{Backend, CrosstermBackend, TestBackend};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::{Frame, Terminal};
use rl_metrics::csv::Table as CsvTable;

use crate::train::exit;

/// Watch the learning curves of one or more runs in the terminal.
#[derive(Debug, Parser)]
#[command(name = "curves", version, long_about = None)]
pub struct CurvesArgs {
    /// Run directories (as `train` prints them); several overlay.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Print one frame of COLSxROWS characters and exit, instead of the
    /// live view.
    #[arg(long, value_name = "COLSxROWS")]
    pub snapshot: Option<String>,
}

/// The most of a CSV file `curves` reads (its end): a frame takes bounded
/// time and memory whatever the size of the run's files.
const MAX_CSV_BYTES: u64 = 32 << 20;

const COLORS: [Color; 6] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::Red,
    Color::Blue,
];

/// What is known of one run.
struct RunView {
    dir: PathBuf,
    name: String,
    env_id: String,
    summary: String,
    total_steps: Option<f64>,
    train: CsvTable,
    eval: CsvTable,
    /// When `train.csv` last changed.
    modified: Option<SystemTime>,
    finished: bool,
}

fn read_config(dir: &Path) -> (String, String, Option<f64>) {
    let Ok(text) = std::fs::read_to_string(dir.join("config.toml")) else {
        return ("?".into(), "no config.toml yet".into(), None);
    };
    let Ok(config) = text.parse::<toml::Table>() else {
        return ("?".into(), "config.toml is not valid TOML".into(), None);
    };
    let get = |table: &str, key: &str| {
        config
            .get(table)
            .and_then(|t| t.get(key))
            .map(|v| v.to_string())
    };
    let env_id = get("env", "id").map_or("?".into(), |s| s.trim_matches('"').to_string());
    let summary = [
        ("envs", get("env", "num_envs")),
        ("workers", get("run", "num_workers")),
        // `[ppo] total_timesteps` in runs made before it moved to `[run]`.
        (
            "steps",
            get("run", "total_timesteps").or(get("ppo", "total_timesteps")),
        ),
        ("lr", get("ppo", "learning_rate")),
        ("actor", get("network", "actor_hidden")),
        ("seed", get("run", "seed")),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    let total = ["run", "ppo"]
        .iter()
        .find_map(|table| config.get(*table)?.get("total_timesteps")?.as_integer())
        .map(|v| v as f64);
    (env_id, summary, total)
}

impl RunView {
    fn load(dir: &Path) -> RunView {
        let (env_id, summary, total_steps) = read_config(dir);
        let read = |f: &str| {
            rl_metrics::csv::read_table_tail(&dir.join(f), MAX_CSV_BYTES).unwrap_or_default()
        };
        RunView {
            dir: dir.to_path_buf(),
            name: dir.file_name().map_or(dir.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            }),
            env_id,
            summary,
            total_steps,
            train: read("train.csv"),
            eval: read("eval.csv"),
            modified: std::fs::metadata(dir.join("train.csv"))
                .and_then(|m| m.modified())
                .ok(),
            finished: dir.join("checkpoints/final.safetensors").exists(),
        }
    }

    fn status(&self) -> &'static str {
        if self.finished {
            return "finished";
        }
        match self.modified.and_then(|m| m.elapsed().ok()) {
            None => "waiting",
            Some(age) if age < Duration::from_secs(15) => "running",
            Some(_) => "idle",
        }
    }

    /// `(x, y)` points of a CSV's column against env steps or time (rows
    /// with a missing value have none), and how many rows hold numbers that
    /// cannot be drawn (beyond [`rl_metrics::plot::DRAWABLE`], negative
    /// steps).
    fn points(table: &CsvTable, y: &str, by_time: bool) -> (Vec<(f64, f64)>, usize) {
        let xs = table.values(if by_time { "time_s" } else { "env_steps" });
        let mut skipped = 0;
        let drawn = xs
            .into_iter()
            .zip(table.values(y))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .filter(|(x, y)| {
                let ok = rl_metrics::plot::drawable(*x, *y);
                skipped += usize::from(!ok);
                ok
            })
            .collect();
        (drawn, skipped)
    }

    fn last(table: &CsvTable, column: &str) -> Option<f64> {
        table
            .values(column)
            .into_iter()
            .rev()
            .find(|v| v.is_finite())
    }
}

fn short(v: f64) -> String {
    rl_metrics::plot::short_number(v)
}

/// Five evenly spaced axis labels.
fn labels(lo: f64, hi: f64, time: bool) -> Vec<Span<'static>> {
    (0..5)
        .map(|i| {
            let v = lo + (hi - lo) * i as f64 / 4.0;
            Span::raw(if time { format!("{v:.0}s") } else { short(v) })
        })
        .collect()
}

fn draw(frame: &mut Frame, runs: &[RunView], by_time: bool) {
    let area = frame.area();
    let table_height = (runs.len() as u16 * 2 + 3).min(area.height / 2);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(8),
            Constraint::Length(table_height),
            Constraint::Length(1),
        ])
        .split(area);
    draw_chart(frame, parts[0], runs, by_time);
    draw_table(frame, parts[1], runs);
    let help = format!(
        " x axis: {} (t to switch)   q to quit   {}",
        if by_time { "time" } else { "env steps" },
        runs.iter()
            .map(|r| r.dir.display().to_string())
            .collect::<Vec<_>>()
            .join("  ")
    );
    frame.render_widget(
        Paragraph::new(help).style(Style::default().add_modifier(Modifier::DIM)),
        parts[2],
    );
}

/// One line of the chart: its legend name, points and style.
type Series = (String, Vec<(f64, f64)>, Style);

/// The most points a line of the chart draws: longer series are thinned
/// evenly (the last point always kept), so a frame takes the same time
/// whatever the length of the run.
const MAX_POINTS: usize = 4096;

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let stride = points.len().div_ceil(MAX_POINTS);
    let last = points.len() - 1;
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || *i == last)
        .map(|(_, p)| p)
        .collect()
}

fn draw_chart(frame: &mut Frame, area: Rect, runs: &[RunView], by_time: bool) {
    let mut skipped = 0;
    let series: Vec<Series> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let color = COLORS[i % COLORS.len()];
            let tag = if runs.len() > 1 {
                format!("{} ", r.name)
            } else {
                String::new()
            };
            let (eval, eval_skipped) = RunView::points(&r.eval, "return_mean", by_time);
            let (train, train_skipped) = RunView::points(&r.train, "episode_return_mean", by_time);
            skipped += eval_skipped + train_skipped;
            [
                (
                    format!("{tag}eval return"),
                    thin(eval),
                    Style::default().fg(color).add_modifier(Modifier::BOLD),
                ),
                (
                    format!("{tag}train episode return"),
                    thin(train),
                    Style::default().fg(color).add_modifier(Modifier::DIM),
                ),
            ]
        })
        .collect();
    let all = series.iter().flat_map(|(_, p, _)| p.iter());
    let (mut x_hi, mut y_lo, mut y_hi) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in all {
        x_hi = x_hi.max(*x);
        y_lo = y_lo.min(*y);
        y_hi = y_hi.max(*y);
    }
    if !by_time {
        for r in runs {
            if let Some(total) = r.total_steps.filter(|t| *t <= rl_metrics::plot::DRAWABLE) {
                x_hi = x_hi.max(total);
            }
        }
    }
    if !y_lo.is_finite() {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let pad = ((y_hi - y_lo) * 0.05).max(0.5);
    let (y_lo, y_hi, x_hi) = (y_lo - pad, y_hi + pad, x_hi.max(1.0));
    let datasets: Vec<Dataset> = series
        .iter()
        .map(|(name, points, style)| {
            Dataset::default()
                .name(name.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(*style)
                .data(points)
        })
        .collect();
    let waiting = runs
        .iter()
        .all(|r| r.train.rows.is_empty() && r.eval.rows.is_empty());
    let mut title = if waiting {
        " waiting for the first rows of train.csv and eval.csv ".to_string()
    } else {
        let mut ids: Vec<&str> = runs.iter().map(|r| r.env_id.as_str()).collect();
        ids.dedup();
        format!(" {} ", ids.join(", "))
    };
    if skipped > 0 {
        title += &format!("({skipped} rows not drawn: beyond +-1e15 or negative steps) ");
    }
    let unread: u64 = runs
        .iter()
        .map(|r| r.train.unread_bytes + r.eval.unread_bytes)
        .sum();
    if unread > 0 {
        title += &format!(
            "(the oldest {} MB of CSV not read) ",
            unread.div_ceil(1 << 20)
        );
    }
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .x_axis(
            Axis::default()
                .title(if by_time { "seconds" } else { "env steps" })
                .bounds([0.0, x_hi])
                .labels(labels(0.0, x_hi, by_time)),
        )
        .y_axis(
            Axis::default()
                .title("return")
                .bounds([y_lo, y_hi])
                .labels(labels(y_lo, y_hi, false)),
        )
        .hidden_legend_constraints((Constraint::Ratio(1, 1), Constraint::Ratio(1, 1)));
    frame.render_widget(chart, area);
}

fn draw_table(frame: &mut Frame, area: Rect, runs: &[RunView]) {
    let mut lines = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let steps = RunView::last(&r.train, "env_steps");
        let progress = match (steps, r.total_steps) {
            (Some(s), Some(t)) if t > 0.0 => {
                format!("{}/{} ({:.0}%)", short(s), short(t), 100.0 * s / t)
            }
            (Some(s), _) => short(s),
            _ => "-".into(),
        };
        let eval = match (
            RunView::last(&r.eval, "return_mean"),
            RunView::last(&r.eval, "return_std"),
        ) {
            (Some(m), Some(s)) => format!("{m:.1} +- {s:.1}"),
            (Some(m), None) => format!("{m:.1}"),
            _ => "-".into(),
        };
        let best = r
            .eval
            .values("return_mean")
            .into_iter()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
            .map_or("-".into(), |b| format!("{b:.1}"));
        let train = RunView::last(&r.train, "episode_return_mean")
            .map_or("-".into(), |v| format!("{v:.1}"));
        let rate = RunView::last(&r.train, "steps_per_s").map_or("-".into(), short);
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", r.name), Style::default().fg(color).add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "[{}] {}  steps {progress}  eval {eval} (best {best})  train {train}  {rate} steps/s",
                r.status(),
                r.env_id,
            )),
        ]));
        lines.push(Line::from(Span::styled(
            format!("  {}", r.summary),
            Style::default().add_modifier(Modifier::DIM),
        )));
    }
    let block = Block::default().borders(Borders::ALL).title(" latest ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn load_all(dirs: &[PathBuf]) -> Vec<RunView> {
    dirs.iter().map(|d| RunView::load(d)).collect()
}

/// The text of one rendered frame.
fn snapshot(dirs: &[PathBuf], cols: u16, rows: u16) -> Result<String, String> {
    let mut terminal = Terminal::new(TestBackend::new(cols, rows)).map_err(|e| e.to_string())?;
    let runs = load_all(dirs);
    terminal
        .draw(|f| draw(f, &runs, false))
        .map_err(|e| e.to_string())?;
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// Puts the terminal back however the live view ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

fn live(dirs: &[PathBuf]) -> Result<(), String> {
    crossterm::terminal::enable_raw_mode().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let _guard = TerminalGuard;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen)
        .map_err(|e| e.to_string())?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(|e| e.to_string())?;
    let mut by_time = false;
    let mut runs = load_all(dirs);
    let mut loaded = Instant::now();
    loop {
        terminal
            .draw(|f| draw(f, &runs, by_time))
            .map_err(|e| e.to_string())?;
        if event::poll(Duration::from_millis(250)).map_err(|e| e.to_string())? {
            if let Event::Key(key) = event::read().map_err(|e| e.to_string())? {
                if key.kind == KeyEventKind::Press {
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(())
                        }
                        KeyCode::Char('t') => by_time = !by_time,
                        _ => {}
                    }
                }
            }
        }
        if loaded.elapsed() >= Duration::from_millis(500) {
            runs = load_all(dirs);
            loaded = Instant::now();
        }
        let _ = terminal.backend_mut().flush();
    }
}

fn parse_size(spec: &str) -> Option<(u16, u16)> {
    let (c, r) = spec.split_once(['x', 'X'])?;
    let (c, r) = (c.trim().parse().ok()?, r.trim().parse().ok()?);
    ((20..=1000).contains(&c) && (10..=500).contains(&r)).then_some((c, r))
}

/// Parses arguments and shows the curves; exit 0, or 2 for bad usage (a
/// directory that is not there, no terminal for the live view).
pub fn curves_main() -> ExitCode {
    let args = match crate::parse_args::<CurvesArgs>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    for dir in &args.runs {
        if !dir.is_dir() {
            errln!(
                "curves: {}: no such run directory (train prints the run directory as its first line)",
                dir.display()
            );
            return ExitCode::from(exit::USAGE);
        }
    }
    let result = match &args.snapshot {
        Some(spec) => {
            match parse_size(spec) {
                Some((cols, rows)) => snapshot(&args.runs, cols, rows).map(|text| outln!("{text}")),
                None => {
                    errln!("curves: --snapshot {spec}: expected COLSxROWS, e.g. 100x30 (at least 20x10)");
                    return ExitCode::from(exit::USAGE);
                }
            }
        }
        None if !std::io::stdout().is_terminal() => {
            errln!("curves: the live view needs a terminal; --snapshot COLSxROWS prints one frame");
            return ExitCode::from(exit::USAGE);
        }
        None => live(&args.runs),
    };
    match result {
        Ok(()) => ExitCode::from(exit::DONE),
        Err(message) => {
            errln!("curves: {message}");
            ExitCode::from(exit::FAILED)
        }
    }
}
