//! `--quick`: the harness runs end to end (simulator, ours in-process and via the CLI, ProxLB)
//! and writes a report with every scenario row. Never asserts timings or which tool wins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_harness_writes_every_row() {
    let opts = compare::Options::new(true);
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
