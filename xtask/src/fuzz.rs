//! `cargo xtask fuzz [--seconds N]`: the libFuzzer targets in `fuzz/` (config parser, tag/rule
//! parser), each run for N seconds (default 60). A benchmark task, not part of `xtask test`.
//!
//! No cargo-fuzz and no nightly: the targets are built with stable rustc and the coverage
//! instrumentation cargo-fuzz uses with `--sanitizer none` (`-Cpasses=sancov-module` and the
//! sanitizer-coverage LLVM options, `--cfg fuzzing`), into `target/fuzz` so the normal build's
//! cache is untouched. `--target` is passed so build scripts and proc macros stay uninstrumented.
//! Corpora persist in `fuzz/corpus/<target>` (seeded from the repository's examples); crashes
//! land in `fuzz/artifacts/<target>/`.

use anyhow::{bail, Context, Result};
use std::process::Command;

const TARGETS: [&str; 2] = ["config_parse", "rules_tags"];

const INSTRUMENT: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

pub fn fuzz(seconds: u64) -> Result<()> {
    let root = super::root();
    let host = host_triple()?;
    let target_dir = root.join("target/fuzz");
    super::run(
        Command::new("cargo")
            .args(["build", "--release", "--manifest-path", "fuzz/Cargo.toml", "--bins", "--target", &host])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", INSTRUMENT),
    )?;
    seed_corpora(&root)?;
    let mut summary = Vec::new();
    for t in TARGETS {
        let corpus = root.join("fuzz/corpus").join(t);
        let artifacts = root.join("fuzz/artifacts").join(t);
        std::fs::create_dir_all(&artifacts)?;
        let bin = target_dir.join(&host).join("release").join(t);
        let shown = format!("{} -max_total_time={seconds} fuzz/corpus/{t}", bin.display());
        eprintln!("[xtask] {shown}");
        let out = Command::new(&bin)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-max_len=4096")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus)
            .current_dir(&root)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let stat = |name: &str| {
            log.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split(':').nth(1))
                .map_or_else(|| "?".into(), |v| v.trim().to_owned())
        };
        let line = format!(
            "{t}: {} runs in {} s ({} exec/s), coverage {} edges, corpus {} inputs, {}",
            stat("stat::number_of_executed_units"),
            seconds,
            stat("stat::average_exec_per_sec"),
            log.lines()
                .rev()
                .find_map(|l| l.split("cov: ").nth(1))
                .and_then(|r| r.split(' ').next())
                .unwrap_or("?"),
            std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0),
            if out.status.success() { "no crash".to_owned() } else { format!("CRASH ({})", out.status) }
        );
        if !out.status.success() {
            eprintln!("{log}");
        }
        summary.push((line, out.status.success()));
    }
    for (line, _) in &summary {
        println!("{line}");
    }
    if summary.iter().any(|(_, ok)| !ok) {
        bail!("a fuzz target crashed: the input is in fuzz/artifacts/");
    }
    Ok(())
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("no host line in rustc -vV")
}

/// Starts each corpus from real inputs: the example configurations and the demo's tags.
fn seed_corpora(root: &std::path::Path) -> Result<()> {
    let config = root.join("fuzz/corpus/config_parse");
    let rules = root.join("fuzz/corpus/rules_tags");
    std::fs::create_dir_all(&config)?;
    std::fs::create_dir_all(&rules)?;
    let example = std::fs::read(root.join("debian/proxlb.yaml")).context("debian/proxlb.yaml")?;
    std::fs::write(config.join("seed-debian-proxlb.yaml"), example)?;
    // Every ```yaml block of the configuration reference.
    let doc = std::fs::read_to_string(root.join("docs/CONFIG.md")).unwrap_or_default();
    for (n, block) in doc.split("```yaml").skip(1).enumerate() {
        let body = block.split("```").next().unwrap_or_default();
        std::fs::write(config.join(format!("seed-config-md-{n}.yaml")), body)?;
    }
    let tags = "plb_affinity_web\nplb_anti_affinity_db\nplb_pin_pve1\nplb_pin_pve1;pve2\nplb_ignore_x\n\
                plb_pin_pve*\nproxbalance:pin:pve3\nproxbalance:ignore\naffinity_a\nanti-affinity_b\n";
    std::fs::write(rules.join("seed-tags"), tags)?;
    Ok(())
}
