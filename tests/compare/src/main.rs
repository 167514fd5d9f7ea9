//! `compare [--quick] [--no-week | --week-only] [--out docs/BENCHMARKS.md]`: runs the side-by-side benchmark
//! and rewrites the "Side by side with ProxLB" section of the output file (only that section).
//! `--ours-only` prints our in-process plan per scenario to stderr and writes nothing (tuning).

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: compare [--quick] [--no-week | --week-only | --ours-only] [--out FILE]");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let (mut week, mut scenarios) = (true, true);
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--no-week" => week = false,
            "--week-only" => scenarios = false,
            "--ours-only" => return compare::ours_only(quick).await,
            "--out" => out = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let out = out.unwrap_or_else(|| compare::workspace_root().join("docs/BENCHMARKS.md"));
    let mut opts = compare::Options::new(quick);
    opts.week = week;
    opts.scenarios = scenarios;
    let res = compare::run_all(&opts).await?;
    let section = compare::report::render(&res);
    compare::report::write_section(&out, &section)?;
    print!("{section}");
    eprintln!("compare: wrote the section to {} in {:.0} s", out.display(), res.total.as_secs_f64());
    if res.rows.iter().any(|r| r.ours.is_err()) {
        anyhow::bail!("our side failed on at least one scenario");
    }
    Ok(())
}
