//! The layer rule of ARCHITECTURE.md, checked on the source: every `crate::<module>` reference
//! (outside comments) points to a module of the same layer or one below, and the graph of
//! top-level modules has no cycle. `cargo test -p pve-rebalancer --test layers` runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → layer, from the top (CLI) down to the PVE client.
const LAYERS: &[(&str, &[&str])] = &[
    ("cli", &["backtest_cli", "cli_proxlb", "maintenance_cli", "status_watch"]),
    ("http", &["http"]),
    ("app", &["app", "scheduler", "notify", "maintenance"]),
    (
        "services",
        &[
            "policy",
            "execute",
            "collect",
            "settings",
            "store",
            "config",
            "auth",
            "preflight",
            "recent",
            "history",
            "sampler",
            "snapshot_cache",
            "state_file",
            "windows",
            "metrics",
        ],
    ),
    ("pve", &["pve"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
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

/// The top-level module a source file belongs to (`http/jobs.rs` → `http`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// `crate::x` references outside `//` comments.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(references(&text).into_iter().filter(|d| *d != module && layer_of(d).is_some()));
    }
    graph
}

#[test]
fn every_module_has_a_layer_and_uses_only_its_own_or_lower_ones() {
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let Some(from) = layer_of(&module) else {
            wrong.push(format!("{module}: not in any layer (add it to LAYERS and ARCHITECTURE.md)"));
            continue;
        };
        for dep in deps {
            let to = layer_of(&dep).unwrap();
            if to < from {
                wrong.push(format!(
                    "{module} ({}) uses {dep} ({}), a layer above it",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layer rule broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = graph();
    // Depth-first search for a back edge; reports the cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            return Some(path[i..].iter().cloned().chain([node.to_owned()]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_references_and_skips_comments() {
    let refs = references("use crate::app::AppState; // crate::http is not used\nlet x = crate::pve::get();");
    assert_eq!(refs, ["app", "pve"].into_iter().map(str::to_owned).collect());
}
