//! Config files: TOML, one table per component, `--set` overrides, and
//! errors that name the file, the line, the key, the value and what is
//! allowed. Nothing is created before a config is fully valid.

use std::ops::Range;
use std::path::Path;

use rl_env::Registry;
use rl_runtime::TrainSettings;
use toml_edit::{Document, DocumentMut, Item};

/// A config that passed every check.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: TrainSettings,
    /// The fully resolved config, as written to the run directory.
    pub resolved_toml: String,
}

/// Keys that moved out of a table, `(table, key, new table)`: a config
/// written before the move gets an error saying where each went.
const MOVED: [(&str, &str, &str); 5] = [
    ("ppo", "total_timesteps", "run"),
    ("ppo", "normalize_obs", "env"),
    ("ppo", "obs_clip", "env"),
    ("ppo", "normalize_reward", "env"),
    ("ppo", "reward_clip", "env"),
];

/// Where a value came from, for messages.
enum Origin {
    Line(usize),
    Override(String),
    /// A command-line option (`--seed N`).
    Flag(String),
    Default,
}

struct Source<'a> {
    path: &'a Path,
    original: Document<String>,
    overrides: Vec<(String, String, String)>, // (table, key, raw "table.key=value")
    seed: Option<u64>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The `(table, key)` whose key or value covers byte `pos` of `doc`.
fn key_at(doc: &Document<String>, pos: usize) -> Option<(String, String)> {
    let covers = |span: Option<Range<usize>>| span.is_some_and(|s| s.start <= pos && pos <= s.end);
    for (table_name, item) in doc.as_table().iter() {
        let Some(table) = item.as_table() else {
            continue;
        };
        for (key, value) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            if covers(key_span) || covers(value.span()) {
                return Some((table_name.to_string(), key.to_string()));
            }
        }
        if covers(table.span()) {
            return Some((table_name.to_string(), String::new()));
        }
    }
    None
}

impl Source<'_> {
    fn origin(&self, table: &str, key: &str) -> Origin {
        if let (("run", "seed"), Some(seed)) = ((table, key), self.seed) {
            return Origin::Flag(format!("--seed {seed}"));
        }
        if let Some((_, _, raw)) = self
            .overrides
            .iter()
            .rev()
            .find(|(t, k, _)| t == table && k == key)
        {
            return Origin::Override(raw.clone());
        }
        let text = self.original.raw();
        let found = self
            .original
            .get(table)
            .and_then(Item::as_table)
            .and_then(|t| {
                if key.is_empty() {
                    t.span()
                } else {
                    t.key(key)
                        .and_then(|k| k.span())
                        .or_else(|| t.get(key).and_then(Item::span))
                }
            });
        match found {
            Some(span) => Origin::Line(line_of(text, span.start)),
            None => Origin::Default,
        }
    }

    fn locate(&self, table: &str, key: &str) -> String {
        let file = self.path.display();
        match self.origin(table, key) {
            Origin::Line(line) => format!("{file}:{line}"),
            Origin::Override(raw) => format!("{file} (--set {raw})"),
            Origin::Flag(flag) => format!("{file} ({flag})"),
            Origin::Default => format!("{file} (default value)"),
        }
    }
}

/// Applies one `table.key=value` override; values that are not TOML are
/// taken as strings (`--set env.id=CartPole-v1`).
fn apply_override(doc: &mut DocumentMut, raw: &str) -> Result<(String, String), String> {
    let (path, value) = raw.split_once('=').ok_or_else(|| {
        format!("--set {raw}: expected table.key=value, e.g. --set ppo.learning_rate=3e-4")
    })?;
    let parts: Vec<&str> = path.trim().split('.').collect();
    // `env.kwargs.NAME=VALUE`: one keyword argument of `[env.kwargs]`.
    if let ["env", "kwargs", name] = parts[..] {
        if name.is_empty() {
            return Err(format!("--set {raw}: expected env.kwargs.NAME=VALUE"));
        }
        let value = value.trim();
        let parsed: toml_edit::Value = value
            .parse()
            .unwrap_or_else(|_| toml_edit::Value::from(value));
        let env = doc
            .entry("env")
            .or_insert_with(|| Item::Table(toml_edit::Table::new()));
        let Some(env) = env.as_table_mut() else {
            return Err(format!("--set {raw}: 'env' is not a table"));
        };
        let kwargs = env
            .entry("kwargs")
            .or_insert_with(|| Item::Table(toml_edit::Table::new()));
        let Some(kwargs) = kwargs.as_table_like_mut() else {
            return Err(format!("--set {raw}: [env] kwargs is not a table"));
        };
        kwargs.insert(name, Item::Value(parsed));
        return Ok(("env".to_string(), "kwargs".to_string()));
    }
    let [table, key] = parts[..] else {
        return Err(format!(
            "--set {raw}: the key must be table.key (e.g. ppo.learning_rate) or env.kwargs.NAME, got '{}'",
            path.trim()
        ));
    };
    if table.is_empty() || key.is_empty() {
        return Err(format!(
            "--set {raw}: the key must be table.key (e.g. ppo.learning_rate)"
        ));
    }
    let value = value.trim();
    let parsed: toml_edit::Value = value
        .parse()
        .unwrap_or_else(|_| toml_edit::Value::from(value));
    let entry = doc
        .entry(table)
        .or_insert_with(|| Item::Table(toml_edit::Table::new()));
    let Some(table_item) = entry.as_table_mut() else {
        return Err(format!("--set {raw}: '{table}' is not a table"));
    };
    table_item.insert(key, Item::Value(parsed));
    Ok((table.to_string(), key.to_string()))
}

/// The value of a `table.key` of the settings, as written in a config.
fn value_of(settings: &TrainSettings, key: &str) -> String {
    let json = serde_json::to_value(settings).unwrap_or_default();
    let (table, field) = key.split_once('.').unwrap_or(("", key));
    json.get(table)
        .and_then(|t| t.get(field))
        .map_or("?".to_string(), |v| v.to_string())
}

/// Reads, overrides, parses and validates a config. Every error message is
/// complete (file, line or override, key, value, what is allowed); several
/// problems are reported together, one per line.
pub fn load(
    path: &Path,
    overrides: &[String],
    seed: Option<u64>,
    registry: &Registry,
) -> Result<LoadedConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    load_text(path, &text, overrides, seed, registry)
}

/// [`load`] on a config's text; `path` names it in messages.
pub fn load_text(
    path: &Path,
    text: &str,
    overrides: &[String],
    seed: Option<u64>,
    registry: &Registry,
) -> Result<LoadedConfig, String> {
    let file = path.display();
    let original = Document::parse(text.to_string()).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(":{}", line_of(text, s.start)))
            .unwrap_or_default();
        format!("{file}{line}: not valid TOML: {}", e.message())
    })?;
    let mut doc = original.clone().into_mut();
    let mut source = Source {
        path,
        original,
        overrides: Vec::new(),
        seed,
    };
    for raw in overrides {
        let (table, key) = apply_override(&mut doc, raw)?;
        source.overrides.push((table, key, raw.clone()));
    }
    let moved: Vec<String> = MOVED
        .iter()
        .filter(|(table, key, _)| doc.get(table).and_then(|t| t.get(key)).is_some())
        .map(|(table, key, to)| {
            format!(
                "{}: [{table}] {key} has moved to [{to}] {key} (the [{table}] table holds only the algorithm's own hyperparameters); write it there",
                source.locate(table, key)
            )
        })
        .collect();
    if !moved.is_empty() {
        return Err(moved.join("\n"));
    }
    let merged = doc.to_string();
    let mut settings: TrainSettings = toml::from_str(&merged).map_err(|e| {
        let message = e.message().trim_end().to_string();
        let location = e
            .span()
            .and_then(|span| {
                let merged_doc = Document::parse(merged.clone()).ok()?;
                key_at(&merged_doc, span.start)
            })
            .map(|(table, key)| {
                let shown = if key.is_empty() {
                    format!("[{table}]")
                } else {
                    format!("[{table}] {key}")
                };
                format!("{}: {shown}", source.locate(&table, &key))
            })
            .unwrap_or_else(|| file.to_string());
        format!("{location}: {message}")
    })?;
    if let Some(seed) = seed {
        settings.run.seed = seed;
    }
    // The [network] keys a config leaves out take its algorithm's
    // defaults (CleanRL's networks for SAC, TD3 and DQN).
    let given = |key: &str| doc.get("network").and_then(|t| t.get(key)).is_some();
    let defaults = rl_runtime::settings::NetworkSettings::for_algo(&settings.run.algo);
    if !given("actor_hidden") {
        settings.network.actor_hidden = defaults.actor_hidden;
    }
    if !given("critic_hidden") {
        settings.network.critic_hidden = defaults.critic_hidden;
    }
    if !given("activation") {
        settings.network.activation = defaults.activation;
    }
    settings.complete();

    let mut problems: Vec<String> = settings
        .validate()
        .into_iter()
        .map(|(table, f)| {
            format!(
                "{}: [{table}] {} = {} is not allowed; expected {}",
                source.locate(table, f.field),
                f.field,
                f.value,
                f.allowed
            )
        })
        .collect();
    if !settings.env.id.trim().is_empty() && !registry.contains(&settings.env.id) {
        problems.push(format!(
            "{}: [env] id = {:?} is not a registered environment; known ids: {}",
            source.locate("env", "id"),
            settings.env.id,
            registry.known().join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    // Sizes the values imply, against what the machine has: a run that
    // cannot fit never starts.
    let spec = rl_runtime::spec_for(registry, &settings).map_err(|e| {
        format!(
            "{}: [env] id = {:?}: {e}",
            source.locate("env", "id"),
            settings.env.id
        )
    })?;
    let problems: Vec<String> = rl_runtime::memory::check_sizes(&settings, &spec)
        .into_iter()
        .map(|p| {
            let (table, key) = p.key.split_once('.').unwrap_or(("", p.key));
            format!(
                "{}: [{table}] {key} = {} is too large: {}",
                source.locate(table, key),
                value_of(&settings, p.key),
                p.message
            )
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let resolved_toml = toml::to_string(&settings)
        .map_err(|e| format!("{file}: cannot write the resolved config: {e}"))?;
    Ok(LoadedConfig {
        settings,
        resolved_toml,
    })
}

/// What loading a run's config for a resume found and will change.
#[derive(Debug, Default)]
pub struct ResumeNotes {
    /// `config.toml` is to be written (rebuilt, or settings changed), once
    /// the checkpoint to resume from is known to be usable.
    pub rewrite: bool,
    /// Keep the present `config.toml` as `config.toml.damaged` first.
    pub keep_damaged: bool,
    /// What the user should know, one line each.
    pub messages: Vec<String>,
}

/// The config a resumed run continues with: the run's own `config.toml`
/// (rebuilt from the settings its checkpoints carry when it is missing or
/// damaged), with `overrides` applied. Settings the checkpoints depend on
/// cannot change (see `TrainSettings::fixed_for_the_run`).
pub fn load_for_resume(
    run_dir: &rl_runtime::RunDir,
    overrides: &[String],
    registry: &Registry,
) -> Result<(LoadedConfig, ResumeNotes), String> {
    let path = run_dir.path().join("config.toml");
    let mut notes = ResumeNotes::default();
    let own = std::fs::read(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
            load_text(&path, &text, &[], None, registry).map(|loaded| (text, loaded))
        });
    let (text, original) = match own {
        Ok(pair) => pair,
        Err(problem) => {
            let (settings, from) =
                rl_runtime::resume::settings_from_checkpoints(run_dir).map_err(|e| {
                    format!("{problem}\nthe run's settings cannot be rebuilt either: {e}")
                })?;
            let text = toml::to_string(&settings)
                .map_err(|e| format!("cannot write the rebuilt config: {e}"))?;
            let loaded = load_text(&path, &text, &[], None, registry)?;
            notes.rewrite = true;
            notes.keep_damaged = path.exists();
            notes.messages.push(format!(
                "{} could not be used ({}); rebuilt it from the settings in {}{}",
                path.display(),
                problem.lines().next().unwrap_or_default(),
                from.display(),
                if notes.keep_damaged {
                    "; the old file is kept as config.toml.damaged"
                } else {
                    ""
                }
            ));
            (text, loaded)
        }
    };
    if overrides.is_empty() {
        return Ok((original, notes));
    }
    let loaded = load_text(&path, &text, overrides, None, registry)?;
    let fixed: Vec<String> = original
        .settings
        .fixed_for_the_run()
        .into_iter()
        .zip(loaded.settings.fixed_for_the_run())
        .filter(|(before, after)| before.1 != after.1)
        .map(|((key, before), (_, after))| {
            let (table, field) = key.split_once('.').unwrap_or(("", key));
            format!(
                "[{table}] {field} = {after} cannot change on resume (the run's value is {before}): the run's checkpoints depend on it; start a new run with train --config to change it"
            )
        })
        .collect();
    if !fixed.is_empty() {
        return Err(fixed.join("\n"));
    }
    let changed = changed_settings(&original.settings, &loaded.settings);
    if !changed.is_empty() {
        notes.rewrite = true;
        notes.messages.push(format!(
            "settings changed from here on: {}",
            changed.join(", ")
        ));
    }
    Ok((loaded, notes))
}

/// `table.key: before -> after` for every setting that differs.
fn changed_settings(before: &TrainSettings, after: &TrainSettings) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(before), serde_json::to_value(after)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for (table, fields) in b.as_object().into_iter().flatten() {
        for (field, value) in fields.as_object().into_iter().flatten() {
            let old = a.get(table).and_then(|t| t.get(field));
            if old != Some(value) {
                let old = old.map_or("(unset)".to_string(), |v| v.to_string());
                changed.push(format!("{table}.{field}: {old} -> {value}"));
            }
        }
    }
    changed
}

/// Writes a resumed run's `config.toml`, keeping a damaged one aside when
/// `notes` say so.
pub fn replace_run_config(
    run_dir: &rl_runtime::RunDir,
    text: &str,
    notes: &ResumeNotes,
) -> Result<(), String> {
    let path = run_dir.path().join("config.toml");
    if notes.keep_damaged {
        let kept = run_dir.path().join("config.toml.damaged");
        std::fs::rename(&path, &kept)
            .map_err(|e| format!("cannot keep {} as {}: {e}", path.display(), kept.display()))?;
    }
    run_dir.write_config(text).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../../configs/ppo.toml");

    fn load_str(text: &str, overrides: &[String]) -> Result<LoadedConfig, String> {
        load_text(
            Path::new("cfg.toml"),
            text,
            overrides,
            None,
            &Registry::with_builtins(),
        )
    }

    /// Settings anywhere in the accepted range of every field.
    fn accepted_settings() -> impl Strategy<Value = TrainSettings> {
        let positive = prop_oneof![
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(1e300),
            Just(f64::MAX),
            (1e-12f64..1e12),
        ];
        (
            (
                0u64..=i64::MAX as u64,
                1u64..=i64::MAX as u64,
                1usize..=4096,
                1u64..=i64::MAX as u64,
                1u64..=i64::MAX as u64,
            ),
            (
                positive.clone(),
                positive.clone(),
                0.0f64..=1.0,
                0.0f64..=1.0,
                prop_oneof![Just(0.0), positive.clone()],
                positive,
                -10.0f64..=10.0,
            ),
            (
                0.1f64..=86_400.0,
                1.0f64..=604_800.0,
                0.1f64..=604_800.0,
                0u32..=1_000_000,
                0.0f64..=30.0,
                1usize..=16,
            ),
        )
            .prop_map(|(ints, floats, run)| {
                let mut s: TrainSettings = toml::from_str("[env]\nid = \"CartPole-v1\"\n").unwrap();
                let (seed, total, steps, interval, ckpt) = ints;
                s.run.seed = seed;
                s.run.total_timesteps = total;
                s.ppo.num_steps = steps;
                s.ppo.num_minibatches = 1;
                s.eval.interval_steps = interval;
                s.checkpoint.interval_updates = ckpt;
                let (lr, clip, gamma, lambda, ent, eps, log_std) = floats;
                s.ppo.learning_rate = lr;
                s.ppo.clip_coef = clip;
                s.ppo.gamma = gamma;
                s.ppo.gae_lambda = lambda;
                s.ppo.ent_coef = ent;
                s.ppo.adam_eps = eps;
                s.ppo.init_log_std = log_std;
                let (worker_timeout, learner_timeout, eval_timeout, restarts, backoff, episodes) =
                    run;
                s.run.worker_timeout_s = worker_timeout;
                s.run.learner_timeout_s = learner_timeout;
                s.eval.timeout_s = eval_timeout;
                s.run.max_restarts = restarts;
                s.run.restart_backoff_s = backoff;
                s.eval.episodes = episodes;
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Class 5 of issue 9: every value the checks accept is written to
        /// config.toml so that it reads back as the same value.
        #[test]
        fn every_accepted_value_reads_back_from_the_written_config(settings in accepted_settings()) {
            prop_assert!(settings.validate().is_empty(), "{:?}", settings.validate());
            let written = toml::to_string(&settings).unwrap();
            let back: TrainSettings = toml::from_str(&written).unwrap();
            prop_assert_eq!(&back, &settings);
            // Through the loader too, unless the machine cannot hold it.
            match load_str(&written, &[]) {
                Ok(loaded) => prop_assert_eq!(loaded.settings, settings),
                Err(e) => prop_assert!(e.contains("is too large"), "{}", e),
            }
        }

        /// Configs with random edits and random overrides: a config or a
        /// message, never a panic.
        #[test]
        fn any_config_text_loads_or_says_why(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..6),
            cut in any::<Option<prop::sample::Index>>(),
            sets in prop::collection::vec(("(env|ppo|run|eval|network|checkpoint|x)", "[a-z_]{1,16}", ".{0,24}"), 0..3),
        ) {
            let mut chars: Vec<char> = SHIPPED.chars().collect();
            for (at, c) in edits {
                let i = at.index(chars.len());
                chars[i] = c;
            }
            if let Some(at) = cut {
                chars.truncate(at.index(chars.len()));
            }
            let text: String = chars.into_iter().collect();
            let overrides: Vec<String> = sets
                .into_iter()
                .map(|(t, k, v)| format!("{t}.{k}={v}"))
                .collect();
            match load_str(&text, &overrides) {
                Ok(loaded) => prop_assert!(loaded.settings.validate().is_empty()),
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }

    #[test]
    fn the_shipped_config_loads() {
        load_str(SHIPPED, &[]).unwrap();
    }
}
