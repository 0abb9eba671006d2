//! Guards the layering of every crate of the workspace: no two modules of
//! a crate import each other, directly or through others. A module is a
//! source file (`a.rs` or `a/mod.rs` is module `a`, `a/b.rs` is `a::b`,
//! `lib.rs` the crate root); an import is any path through `crate::` or
//! `super::` in its code, resolved to the deepest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules of one crate: module path (segments joined by `::`, "" for the
/// root) to its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Binaries are crates of their own.
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path);
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The text without comments and string literals (so that a path in a doc
/// comment or a message is not an import).
fn code_only(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && bytes.get(i + 2) == Some(&'\'') {
            // A char literal such as '{'.
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path of a use tree starting at `start` (just after `crate::` or
/// `super::`): `a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`.
fn use_tree(code: &[char], start: usize, prefix: &str, out: &mut Vec<String>) {
    let mut i = start;
    let mut path = prefix.to_string();
    loop {
        while code.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if code.get(i) == Some(&'{') {
            // A group: each comma-separated tree, at depth 1.
            i += 1;
            let mut item_start = i;
            let mut depth = 0;
            while let Some(&c) = code.get(i) {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        use_tree(code, item_start, &path, out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        use_tree(code, item_start, &path, out);
                        item_start = i + 1;
                    }
                    _ => {}
                }
                i += 1;
            }
            return;
        }
        let ident_start = i;
        while code
            .get(i)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            i += 1;
        }
        let ident: String = code[ident_start..i].iter().collect();
        if ident.is_empty() {
            if !path.is_empty() {
                out.push(path);
            }
            return;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(&ident);
        if code.get(i) == Some(&':') && code.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            out.push(path);
            return;
        }
    }
}

/// The modules `module` imports, with the path that imports each.
fn imports(
    module: &str,
    file: &Path,
    known: &BTreeMap<String, PathBuf>,
) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let code: Vec<char> = code_only(&text).chars().collect();
    let mut paths = Vec::new();
    let is_mod_file = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
    let parent = |m: &str| -> String {
        // `super` of a file module is the module that declares it.
        let mut parts: Vec<&str> = m.split("::").filter(|p| !p.is_empty()).collect();
        if !is_mod_file || !parts.is_empty() {
            parts.pop();
        }
        parts.join("::")
    };
    let mut i = 0;
    while i < code.len() {
        let boundary = i == 0 || !(code[i - 1].is_alphanumeric() || code[i - 1] == '_');
        let rest: String = code[i..code.len().min(i + 7)].iter().collect();
        if boundary && rest.starts_with("crate::") {
            use_tree(&code, i + 7, "", &mut paths);
            i += 7;
        } else if boundary && rest.starts_with("super::") {
            // Nested `super::super::` climbs further.
            let mut base = parent(module);
            let mut j = i + 7;
            while code[j..].iter().take(7).collect::<String>() == "super::" {
                let mut parts: Vec<&str> = base.split("::").filter(|p| !p.is_empty()).collect();
                parts.pop();
                base = parts.join("::");
                j += 7;
            }
            // Inside `mod tests { use super::*; }` of a file, `super` is the
            // file's own module: a self-reference either way.
            use_tree(&code, j, &base, &mut paths);
            i = j;
        } else {
            i += 1;
        }
    }
    let mut found = BTreeMap::new();
    for path in paths {
        let parts: Vec<&str> = path.split("::").collect();
        let target = (0..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| known.contains_key(candidate))
            .unwrap_or_default();
        if target != module {
            found.entry(target).or_insert(path);
        }
    }
    found
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut sources = Vec::new();
    for group in ["crates", "examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for entry in entries.flatten() {
            let src = entry.path().join("src");
            if src.is_dir() {
                sources.push(src);
            }
        }
    }
    sources.sort();
    sources
}

fn loops_in(src: &Path) -> Vec<String> {
    let known = modules(src);
    let graph: BTreeMap<String, BTreeMap<String, String>> = known
        .iter()
        .map(|(module, file)| (module.clone(), imports(module, file, &known)))
        .collect();
    cycles(&graph)
        .into_iter()
        .map(|component| {
            let name = |m: &str| {
                if m.is_empty() {
                    "(crate root)".to_string()
                } else {
                    m.to_string()
                }
            };
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|(to, _)| component.contains(to))
                        .map(|(to, path)| format!("{} -> {} (via {path})", name(from), name(to)))
                        .collect::<Vec<_>>()
                })
                .collect();
            format!("{}: {}", src.display(), edges.join("; "))
        })
        .collect()
}

#[test]
fn no_two_modules_of_any_crate_import_each_other() {
    let sources = workspace_sources();
    assert!(sources.len() >= 8, "found only {sources:?}");
    let loops: Vec<String> = sources.iter().flat_map(|src| loops_in(src)).collect();
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn the_checker_finds_a_loop_through_a_third_module() {
    let dir = std::env::temp_dir().join(format!("ferrorl-import-loop-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("layer")).expect("create");
    let files = [
        ("lib.rs", "pub mod a;\npub mod layer;\n"),
        (
            "a.rs",
            "use crate::layer::b::Thing;\n// crate::c::Not in a comment\n",
        ),
        ("layer/mod.rs", "pub mod b;\npub mod c;\n"),
        (
            "layer/b.rs",
            "use super::c::{Other, more::Deeper};\npub struct Thing;\n",
        ),
        ("layer/c.rs", "pub fn f() { crate::a::g(\"crate::b\"); }\n"),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).expect("write");
    }
    let loops = loops_in(&src);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(loops.len(), 1, "{loops:?}");
    for edge in ["a -> layer::b", "layer::b -> layer::c", "layer::c -> a"] {
        assert!(loops[0].contains(edge), "{edge} missing from {}", loops[0]);
    }
}
