//! The layers of ARCHITECTURE.md, enforced: every `crate::X` path in
//! `src/` must name a module in the importer's own layer or one below, and
//! the modules must not import each other in a cycle. The layer table is
//! read from ARCHITECTURE.md itself, so the document and this check cannot
//! drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name → layer number, from the "Layers" table: rows such as
/// "| 3 | `store`, `upstream`, `accounting` | ... |".
fn layer_table(architecture: &str) -> BTreeMap<String, u32> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let mut layers = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.get(1).map(|c| c.parse::<u32>()) else {
            continue; // the header and its rule
        };
        for name in cells[2].split(',') {
            let name = name.trim().trim_matches('`');
            assert!(!name.is_empty(), "empty module name in row {row:?}");
            let previous = layers.insert(name.to_string(), layer);
            assert!(previous.is_none(), "`{name}` is in two layers");
        }
    }
    layers
}

/// One `crate::X` path: where, and which module it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// The top-level module a source file belongs to (`routing/table.rs` →
/// `routing`); `None` for the crate roots.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every `crate::X` in `source` outside comments.
fn imports(file: &str, from: &str, source: &str) -> Vec<Import> {
    let mut out = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let preceded_by_ident = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name.is_empty() && !preceded_by_ident && name != from {
                out.push(Import {
                    file: file.to_string(),
                    line: i + 1,
                    from: from.to_string(),
                    to: name,
                });
            }
            rest = after;
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What is wrong with `imports` against `layers`: upward imports, unknown
/// modules, and cycles between modules of one layer.
fn violations(layers: &BTreeMap<String, u32>, imports: &[Import]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        let (Some(from), Some(to)) = (layers.get(&i.from), layers.get(&i.to)) else {
            problems.push(format!(
                "{}:{}: `{}` or `{}` is not in the layer table",
                i.file, i.line, i.from, i.to
            ));
            continue;
        };
        if to > from {
            problems.push(format!(
                "{}:{}: `{}` (layer {from}) imports `crate::{}` (layer {to}), which is above it",
                i.file, i.line, i.from, i.to
            ));
        }
        edges.entry(&i.from).or_default().insert(&i.to);
    }
    // Same-layer imports are allowed, as long as they do not go round.
    for start in edges.keys() {
        let mut stack = vec![vec![*start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap();
            for next in edges.get(last).into_iter().flatten() {
                if next == start {
                    problems.push(format!("import cycle: {} -> {start}", path.join(" -> ")));
                } else if seen.insert(*next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn imports_point_only_down_the_layers_of_architecture_md() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let layers = layer_table(&architecture);
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut all = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let Some(module) = module_of(relative) else {
            continue;
        };
        let source = std::fs::read_to_string(path).unwrap();
        all.extend(imports(&relative.display().to_string(), &module, &source));
    }
    let problems = violations(&layers, &all);
    assert!(
        problems.is_empty(),
        "layering broken:\n  {}",
        problems.join("\n  ")
    );

    // The table names exactly the crate's modules.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    let tabled: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared, tabled,
        "src/lib.rs and ARCHITECTURE.md's layer table differ"
    );
}

#[test]
fn an_upward_import_or_a_cycle_is_caught() {
    let layers = layer_table(
        "# A\n\n## Layers\n\n| layer | modules | job |\n|---|---|---|\n| 0 | `usage`, `metrics` | x |\n| 1 | `config` | y |\n\n## Next\n",
    );
    assert_eq!(layers["metrics"], 0);
    assert_eq!(layers["config"], 1);
    let up = imports(
        "usage/cell.rs",
        "usage",
        "use crate::config::Cooldown; // crate::metrics\n",
    );
    assert_eq!(up.len(), 1, "comments are not imports");
    let problems = violations(&layers, &up);
    assert_eq!(
        problems,
        ["usage/cell.rs:1: `usage` (layer 0) imports `crate::config` (layer 1), which is above it"]
    );
    let down = imports(
        "config/mod.rs",
        "config",
        "fn f() -> crate::usage::Totals { todo!() }",
    );
    assert!(violations(&layers, &down).is_empty());
    let mut round = imports("usage/mod.rs", "usage", "use crate::metrics::X;");
    round.extend(imports("metrics/mod.rs", "metrics", "use crate::usage::Y;"));
    let problems = violations(&layers, &round);
    assert!(
        problems.iter().any(|p| p.starts_with("import cycle")),
        "{problems:?}"
    );
    let unknown = imports(
        "usage/mod.rs",
        "usage",
        "use crate::nowhere::X; use foo_crate::bar;",
    );
    assert_eq!(violations(&layers, &unknown).len(), 1);
}
