//! `cargo xtask screenshots`: every view of the panel, light and dark, into `docs/screenshots/`
//! (shown in the README). Builds the panel, then runs the browser test that takes them
//! (`tests/e2e/tests/integration/panel_screens.rs`, which also checks each view rendered) with its output
//! pointed at the docs instead of `target/screenshots/`.

use crate::{frontend, root, run};
use anyhow::Result;
use std::process::Command;

pub fn screenshots() -> Result<()> {
    frontend(false)?;
    let out = root().join("docs/screenshots");
    std::fs::create_dir_all(&out)?;
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "-p", "e2e", "--test", "integration", "--", "panel_screens", "--test-threads=1"])
        .env("PVRB_SCREENSHOTS", &out))?;
    eprintln!("[xtask] screenshots written to {}", out.display());
    Ok(())
}
