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

/// Where a value came from, for messages.
enum Origin {
    Line(usize),
    Override(String),
    Default,
}

struct Source<'a> {
    path: &'a Path,
    original: Document<String>,
    overrides: Vec<(String, String, String)>, // (table, key, raw "table.key=value")
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
    let [table, key] = parts[..] else {
        return Err(format!(
            "--set {raw}: the key must be table.key (e.g. ppo.learning_rate), got '{}'",
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

/// Reads, overrides, parses and validates a config. Every error message is
/// complete (file, line or override, key, value, what is allowed); several
/// problems are reported together, one per line.
pub fn load(
    path: &Path,
    overrides: &[String],
    seed: Option<u64>,
    registry: &Registry,
) -> Result<LoadedConfig, String> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {file}: {e}"))?;
    let original = Document::parse(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    ":{}",
                    line_of(&std::fs::read_to_string(path).unwrap_or_default(), s.start)
                )
            })
            .unwrap_or_default();
        format!("{file}{line}: not valid TOML: {}", e.message())
    })?;
    let mut doc = original.clone().into_mut();
    let mut source = Source {
        path,
        original,
        overrides: Vec::new(),
    };
    for raw in overrides {
        let (table, key) = apply_override(&mut doc, raw)?;
        source.overrides.push((table, key, raw.clone()));
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
            registry.ids().collect::<Vec<_>>().join(", ")
        ));
    }
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
