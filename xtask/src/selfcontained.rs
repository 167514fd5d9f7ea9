//! The guard that the repository carries everything it needs: no tracked file names a path
//! outside the repository, and the schema-dependent tests pass in a copy of the tracked tree
//! with nothing beside it. It also checks that every test file is built by a test target.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Relative paths (`../x`) in tracked text files that leave the repository when read from the
/// file's folder or, in Rust code, from its crate's folder (`CARGO_MANIFEST_DIR`).
pub fn outside_references(root: &Path, files: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    // This file's own tests name such paths on purpose.
    for rel in files.iter().filter(|f| !f.ends_with(file!())) {
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else { continue }; // binary files
        let file = Path::new(rel);
        let mut bases = vec![file.parent().unwrap_or(Path::new(""))];
        if rel.ends_with(".rs") {
            bases.extend(crate_dir(root, file));
        }
        for (line_no, line) in text.lines().enumerate() {
            for reference in parent_references(line) {
                if bases.iter().any(|base| escapes(base, reference)) {
                    found.push(format!("{rel}:{}: {reference}", line_no + 1));
                }
            }
        }
    }
    found
}

/// `../` chains with what follows them up to a quote, space or bracket: `../../x/y`. A chain
/// after a slash counts too (`CARGO_MANIFEST_DIR/../x` is read from the crate folder), which
/// errs on the strict side for `x/../y`.
fn parent_references(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("../") {
        let starts_a_path =
            i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
        let tail = &rest[i..];
        let end = tail.find(|c: char| c.is_whitespace() || "\"'`)(]<>,;".contains(c)).unwrap_or(tail.len());
        if starts_a_path {
            out.push(&tail[..end]);
        }
        rest = &tail[end.max(3)..];
    }
    out
}

/// The folder of the nearest `Cargo.toml` above a Rust file: what `CARGO_MANIFEST_DIR` is.
fn crate_dir<'a>(root: &Path, file: &'a Path) -> Option<&'a Path> {
    file.ancestors().skip(1).find(|d| root.join(d).join("Cargo.toml").exists())
}

/// Whether `reference`, read from `base` (relative to the repository root), leaves the root.
fn escapes(base: &Path, reference: &str) -> bool {
    let mut depth = base.components().filter(|c| matches!(c, Component::Normal(_))).count() as i64;
    for c in Path::new(reference).components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Test files that no test target builds: with `autotests = false` (one integration binary per
/// crate, `tests/integration/main.rs`), a file beside that folder, or one in it without its
/// `mod` line, would never be compiled.
pub fn unbuilt_test_files(root: &Path, files: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files.iter().filter(|f| f.ends_with(".rs")) {
        let path = Path::new(f);
        let Some(tests) = path.ancestors().find(|d| d.file_name().is_some_and(|n| n == "tests")) else {
            continue;
        };
        let Some(krate) = tests.parent() else { continue };
        let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).unwrap_or_default();
        if !manifest.lines().any(|l| l.replace(' ', "") == "autotests=false") {
            continue;
        }
        let main = tests.join("integration/main.rs");
        let unbuilt = match path.strip_prefix(tests.join("integration")) {
            Ok(rest) if rest == Path::new("main.rs") => false,
            Ok(rest) => {
                let module = rest
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned());
                let text = std::fs::read_to_string(root.join(&main)).unwrap_or_default();
                !module.is_some_and(|m| text.lines().any(|l| l.trim() == format!("mod {m};")))
            }
            Err(_) => path.parent() == Some(tests),
        };
        if unbuilt {
            found.push(format!("{f}: add `mod <name>;` for it to {} (autotests = false)", main.display()));
        }
    }
    found
}

/// The e2e modules whose tests need the built panel (`browser*`, `panel*`): `cargo xtask test`
/// runs them once the panel is built and every other test while it builds.
pub const PANEL_MODULE_PREFIXES: [&str; 2] = ["browser", "panel"];

/// e2e test files that use the built panel or a browser but whose module name does not say so:
/// `cargo xtask test` would run them before the panel exists.
pub fn misplaced_panel_tests(root: &Path, files: &[String]) -> Vec<String> {
    let folder = Path::new("tests/e2e/tests/integration");
    let mut found = Vec::new();
    for f in files.iter().filter(|f| f.ends_with(".rs")) {
        let Ok(rest) = Path::new(f).strip_prefix(folder) else { continue };
        let module = rest.to_string_lossy();
        if PANEL_MODULE_PREFIXES.iter().any(|p| module.starts_with(p)) || module == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
        if text.contains("panel_dir()") || text.contains("webdriver::Browser") {
            found.push(format!(
                "{f}: uses the built panel or a browser; move those tests to a module named {}*",
                PANEL_MODULE_PREFIXES.join("* or ")
            ));
        }
    }
    found
}

/// The tracked files, as `git ls-files` lists them.
pub fn tracked_files(root: &Path) -> Result<Vec<String>> {
    let out =
        Command::new("git").arg("ls-files").current_dir(root).output().context("running git ls-files")?;
    if !out.status.success() {
        bail!("git ls-files failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.lines().filter(|f| root.join(f).is_file()).map(String::from).collect())
}

/// Copies the tracked files into `dest` (created), keeping their paths.
pub fn copy_tree(root: &Path, files: &[String], dest: &Path) -> Result<()> {
    for f in files {
        let to = dest.join(f);
        std::fs::create_dir_all(to.parent().expect("a file has a folder"))?;
        std::fs::copy(root.join(f), &to).with_context(|| format!("copying {f}"))?;
    }
    Ok(())
}

/// The tree's checks that need no build: no tracked path leads outside the repository, every
/// test file is built, and browser tests are where `cargo xtask test` expects them.
pub fn scan(root: &Path) -> Result<()> {
    let files = tracked_files(root)?;
    let outside = outside_references(root, &files);
    if !outside.is_empty() {
        bail!(
            "{} path(s) in tracked files point outside the repository; put what they need into the repo:\n{}",
            outside.len(),
            outside.join("\n")
        );
    }
    let unbuilt = unbuilt_test_files(root, &files);
    if !unbuilt.is_empty() {
        bail!("{} test file(s) are built by no test target:\n{}", unbuilt.len(), unbuilt.join("\n"));
    }
    let misplaced = misplaced_panel_tests(root, &files);
    if !misplaced.is_empty() {
        bail!(
            "{} test file(s) need the panel outside the panel modules:\n{}",
            misplaced.len(),
            misplaced.join("\n")
        );
    }
    Ok(())
}

/// Runs the guard: [`scan`], then pve-sim's schema tests in a lone copy of the tree, built into
/// the workspace's `target/`. Built alone, pve-sim resolves its dependencies' features apart
/// from the workspace, so part of the tree compiles again (215 s of a cold run): `cargo xtask
/// test` uses [`crate::isolation`] instead and falls back to this where it cannot.
pub fn check(root: &Path) -> Result<()> {
    scan(root)?;
    let files = tracked_files(root)?;
    let lone = tempfile::Builder::new().prefix("pvrb-lone-clone-").tempdir()?;
    let copy: PathBuf = lone.path().join("repo");
    copy_tree(root, &files, &copy)?;
    crate::run(
        Command::new("cargo")
            .args(["test", "--offline", "-p", "pve-sim", "--lib", "--", "schema"])
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env_remove("PVE_APIDATA"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_references_that_leave_the_tree() {
        assert!(escapes(Path::new("tests/pve-sim"), "../../../shared/pve-api/apidata.json"));
        assert!(!escapes(Path::new("tests/pve-sim"), "../../target/venv"));
        assert!(!escapes(Path::new("fuzz"), "../shared"));
        assert!(escapes(Path::new(""), "../x"));
        assert_eq!(parent_references(r#"join("../../../shared/a.json")"#), vec!["../../../shared/a.json"]);
        assert_eq!(parent_references("CARGO_MANIFEST_DIR/../y and ../z"), vec!["../y", "../z"]);
        assert!(parent_references("v1../c").is_empty());
    }

    #[test]
    fn finds_test_files_no_target_builds() {
        let root = tempfile::tempdir().unwrap();
        let it = root.path().join("c/tests/integration");
        std::fs::create_dir_all(it.join("common")).unwrap();
        std::fs::write(root.path().join("c/Cargo.toml"), "[package]\nautotests = false\n").unwrap();
        std::fs::write(it.join("main.rs"), "mod common;\nmod a;\n").unwrap();
        let files: Vec<String> = [
            "c/tests/integration/main.rs",
            "c/tests/integration/a.rs",
            "c/tests/integration/common/mod.rs",
            "c/tests/integration/b.rs",
            "c/tests/new.rs",
        ]
        .map(String::from)
        .to_vec();
        let found = unbuilt_test_files(root.path(), &files);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("c/tests/integration/b.rs") && found[1].starts_with("c/tests/new.rs"),
            "{found:?}"
        );
    }

    #[test]
    fn finds_browser_tests_outside_the_panel_modules() {
        let root = tempfile::tempdir().unwrap();
        let it = root.path().join("tests/e2e/tests/integration");
        std::fs::create_dir_all(&it).unwrap();
        let body = "let s = Stack::start(Some(e2e::panel_dir()));";
        for (name, text) in
            [("panel_x.rs", body), ("browser_y.rs", body), ("api.rs", "get()"), ("late.rs", body)]
        {
            std::fs::write(it.join(name), text).unwrap();
        }
        let files: Vec<String> = ["panel_x.rs", "browser_y.rs", "api.rs", "late.rs"]
            .map(|n| format!("tests/e2e/tests/integration/{n}"))
            .to_vec();
        let found = misplaced_panel_tests(root.path(), &files);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("tests/e2e/tests/integration/late.rs"), "{found:?}");
    }

    #[test]
    fn reads_references_from_the_crate_folder_too() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("tests/sim/src")).unwrap();
        std::fs::write(root.path().join("tests/sim/Cargo.toml"), "").unwrap();
        let inside = r#"PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")"#;
        let outside = r#"PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/x.json")"#;
        std::fs::write(root.path().join("tests/sim/src/a.rs"), format!("{inside}\n{outside}\n")).unwrap();
        let found = outside_references(root.path(), &["tests/sim/src/a.rs".to_string()]);
        assert_eq!(found, vec!["tests/sim/src/a.rs:2: ../../../shared/x.json"]);
    }
}
