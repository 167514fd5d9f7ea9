//! `--quick`: the harness runs end to end (simulator, ours in-process and via the CLI, ProxLB)
//! and writes a report with every scenario row. Never asserts timings or which tool wins. The
//! simulated week is its own test, so that the two run side by side (both mostly wait on
//! ProxLB's Python and the simulators).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_harness_writes_every_row() {
    let opts = compare::Options { week: false, ..compare::Options::new(true) };
    let res = compare::run_all(&opts).await.expect("harness runs");
    let dir = compare::temp_dir("quick-test");
    let out = dir.join("BENCHMARKS.md");
    std::fs::write(&out, "# Benchmarks\n\n## Engine\n\nkept\n").unwrap();
    compare::report::write_section(&out, &compare::report::render(&res)).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("## Engine\n\nkept\n"), "other sections kept:\n{text}");
    assert!(text.contains(compare::report::HEADING));
    assert!(text.contains("### Moving only as far as ProxLB gets"), "prefix table expected:\n{text}");
    assert!(
        text.contains("### With as many migrations as ProxLB made"),
        "equal-budget table expected:\n{text}"
    );
    for case in compare::scenarios::suite(true) {
        let rows = text.lines().filter(|l| l.starts_with(&format!("| {} ", case.id))).count();
        assert!(rows >= 2, "{}: quality and cost rows expected:\n{text}", case.id);
    }
    for r in &res.rows {
        let o = r.ours.as_ref().unwrap_or_else(|e| panic!("{}: our side failed: {e}", r.case.id));
        if let Err(e) = &o.cli {
            panic!("{}: our CLI failed: {e}", r.case.id);
        }
        assert_eq!(
            o.same_moves_as_proxlb.is_some(),
            r.proxlb_outcome.is_some(),
            "{}: an equal-budget plan wherever ProxLB planned",
            r.case.id
        );
    }
    assert!(res.tiny.iter().all(|t| t.is_ok()), "{:?}", res.tiny);
    assert!(!res.scaling.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_week_executes_both_tools_and_reports_it() {
    let opts = compare::Options { scenarios: false, ..compare::Options::new(true) };
    let res = compare::run_all(&opts).await.expect("harness runs");
    let week = res.week.as_ref().expect("the week was asked for");
    let w = week.as_ref().unwrap_or_else(|e| panic!("the quick week failed: {e}"));
    let hours = w.spec.hours / w.spec.ours_every_h;
    assert_eq!(w.ours.runs, hours, "one run of ours per scheduled hour");
    assert_eq!(w.ours.failed_runs, 0, "our runs failed: {:?}", w.ours.failures);
    assert!(w.ours.invariants.is_empty(), "the simulator found after our week: {:?}", w.ours.invariants);
    assert!(w.proxlb.runs > 0, "ProxLB ran");
    let text = compare::report::render(&res);
    assert!(text.contains("### A simulated week (executing)"), "week section expected:\n{text}");
    assert!(!text.contains("The week did not complete"), "{text}");
}
