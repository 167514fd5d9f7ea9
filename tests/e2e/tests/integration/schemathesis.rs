//! Schema-driven fuzzing of the HTTP API with schemathesis (PyPI, in `target/venv`, installed by
//! `xtask/setup.sh`): the simulator and the backend run for real on loopback, the OpenAPI
//! document is the one the backend serves, and schemathesis sends valid and invalid requests to
//! every operation, authenticated with the demo's API token.
//!
//! Passes when no answer is a 5xx, every status is one the document declares, and every body
//! fits its declared schema. Bounded: few examples per operation, a fixed seed, a time budget
//! and a hard timeout on the process. Afterwards the simulator's invariants must still hold
//! (every guest once, no stray lock), since execute and cancel are fuzzed too.

use e2e::{temp_dir, workspace_root, Stack};
use std::time::Duration;

const TOKEN: &str = "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b";
/// Upper bound on schemathesis' own run (`--max-time`) and, with margin, on the process.
const BUDGET_SECS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_every_answer_fits_the_document() {
    let st = workspace_root().join("target/venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed at {}: run xtask/setup.sh (pip installs schemathesis into target/venv)",
        st.display()
    );
    let s = Stack::start(None).await.expect("simulator and backend");
    let dir = temp_dir("schemathesis");
    let doc = reqwest::Client::new()
        .get(format!("{}/api/v1/openapi.json", s.backend_url))
        .header("Authorization", TOKEN)
        .send()
        .await
        .expect("GET openapi.json")
        .text()
        .await
        .unwrap();
    let doc_path = dir.join("openapi.json");
    std::fs::write(&doc_path, &doc).unwrap();

    let mut cmd = tokio::process::Command::new(&st);
    cmd.arg("run")
        .arg(&doc_path)
        .args(["--url", &s.backend_url])
        .args(["--header", &format!("Authorization: {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "20261122", "--workers", "1"])
        .args(["--max-time", &BUDGET_SECS.to_string(), "--request-timeout", "10"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .arg("--suppress-health-check=all")
        .arg("--report=junit")
        .arg("--report-junit-path")
        .arg(dir.join("junit.xml"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(&dir)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(BUDGET_SECS + 60), cmd.output())
        .await
        .expect("schemathesis did not finish within its budget + 60 s")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found problems ({}):\n{stdout}\n{stderr}", out.status);
    // It really tested: every operation was reached.
    let operations = doc.matches("\"operationId\"").count();
    assert!(operations >= 10, "only {operations} operations in the document");
    assert!(stdout.contains("passed"), "no summary in schemathesis' output:\n{stdout}");
    println!("{stdout}");
    if let Err(v) = s.sim.check_invariants() {
        panic!("simulator invariants violated after fuzzing: {v:?}");
    }
    s.stop().await;
}
