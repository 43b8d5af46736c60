//! The shape of the library, kept by a test: a change travels one way through the modules
//! (schema → graph → load → change → capture → cache → route → sync → hub → live), so a
//! module imports only modules before it, and no two modules import each other.
//!
//! Read off the `crate::` paths of `rowsync/src` (imports and qualified paths alike).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules in the order a change travels; each may use those before it.
const LAYERS: &[&str] = &[
    "error", "schema", "graph", "load", "change", "capture", "cache", "route", "sync", "hub",
    "live",
];

/// Pairs the order alone would allow but the design forbids: sync applies changes to data
/// and must not know where they came from.
const FORBIDDEN: &[(&str, &str)] = &[("sync", "capture")];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib").then(|| name.to_owned())
}

/// Every top-level module a file names through `crate::`, outside comments.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::c}` names several
        if let Some(at) = code.find("crate::{") {
            for part in code[at + "crate::{".len()..].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        }
    }
    used
}

#[test]
fn modules_import_only_the_modules_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for used in used_modules(&text) {
            if used != module && LAYERS.contains(&used.as_str()) {
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                edges.entry((module.clone(), used)).or_default().push(shown);
            }
        }
    }
    assert!(
        !edges.is_empty(),
        "no imports found: the test reads the wrong tree"
    );
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut problems = Vec::new();
    for ((from, to), files) in &edges {
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if a > b => {}
            (None, _) => problems.push(format!("module `{from}` is not in LAYERS; place it")),
            _ => problems.push(format!(
                "`{from}` imports `{to}`, which comes after it ({files:?})"
            )),
        }
        if FORBIDDEN.contains(&(from.as_str(), to.as_str())) {
            problems.push(format!("`{from}` must not import `{to}` ({files:?})"));
        }
    }
    assert!(
        problems.is_empty(),
        "import rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_every_form_of_path() {
    let used = used_modules(
        "use crate::schema::Key;\nuse crate::{graph::hops, load};\nlet x = crate::cache::Loader::new(); // crate::hub",
    );
    let used: Vec<&str> = used.iter().map(String::as_str).collect();
    assert_eq!(used, ["cache", "graph", "load", "schema"]);
}
