//! Guards the README's configuration reference against the code: every key
//! a resolved config has is in the table, every key of the table exists,
//! and each default the table gives is the code's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

/// `(table, key) -> default cell` of the README's configuration table.
fn readme_table() -> BTreeMap<(String, String), String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `[table] key` | default | meaning |
        let [_, key, default, _meaning, _] = cells[..] else {
            continue;
        };
        let Some(key) = key.strip_prefix("`[").and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        let (table, key) = key.split_once("] ").unwrap();
        let previous = rows.insert((table.to_string(), key.to_string()), default.to_string());
        assert!(previous.is_none(), "[{table}] {key} is twice in the table");
    }
    rows
}

/// The config `train` resolves from `[env] id` alone: every default.
fn resolved_defaults() -> toml::Table {
    let settings: rl_runtime::TrainSettings =
        toml::from_str("[env]\nid = \"CartPole-v1\"\n").unwrap();
    toml::to_string(&settings).unwrap().parse().unwrap()
}

fn same(readme: &str, code: &toml::Value) -> bool {
    let cell = readme.trim_matches('`');
    let parsed: toml::Table = match format!("v = {cell}").parse() {
        Ok(t) => t,
        Err(_) => return false,
    };
    match (&parsed["v"], code) {
        (toml::Value::Float(a), toml::Value::Float(b)) => a == b,
        (toml::Value::Integer(a), toml::Value::Float(b)) => *a as f64 == *b,
        (a, b) => a == b,
    }
}

#[test]
fn the_readme_configuration_table_matches_the_code() {
    let table = readme_table();
    assert!(table.len() > 30, "found only {} rows", table.len());
    let resolved = resolved_defaults();
    let mut problems = Vec::new();
    for (name, item) in &resolved {
        for (key, value) in item.as_table().unwrap() {
            let id = (name.clone(), key.clone());
            match table.get(&id) {
                None => problems.push(format!("[{name}] {key} is not in the README's table")),
                Some(_) if name == "env" && key == "id" => {}
                Some(cell) if !same(cell, value) => problems.push(format!(
                    "[{name}] {key}: the README says {cell}, the code's default is {value}"
                )),
                Some(_) => {}
            }
        }
    }
    for ((name, key), cell) in &table {
        let in_code = resolved.get(name).and_then(|t| t.get(key)).is_some();
        // Optional settings without a default are absent from a resolved
        // config; the table says "none", and the key must still be one
        // (unknown keys are refused).
        let optional = cell == "none" && {
            let text = format!("[env]\nid = \"CartPole-v1\"\n[{name}]\n{key} = 0.5\n");
            toml::from_str::<rl_runtime::TrainSettings>(&text).is_ok()
        };
        if !in_code && !optional {
            problems.push(format!(
                "[{name}] {key} is in the README's table but not a setting"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_is_at_most_12_kb() {
    let len = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .unwrap()
        .len();
    assert!(len <= 12 * 1024, "README.md is {len} bytes");
}
