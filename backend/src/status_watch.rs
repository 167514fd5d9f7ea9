//! `pve-rebalancer status [--watch] [--once]`: a live terminal table of the cluster — nodes with
//! CPU and memory use, the imbalance, and the running job's step progress (read from the
//! execution journal when this user may read it).
//!
//! Plain ANSI (clear screen, colour for hot nodes) rather than a TUI library: the frame is a pure
//! function of the snapshot and the job, so it is unit-tested, and `--once` prints one frame
//! without escape codes for scripts and tests.

use shared::api::{ClusterView, JobView};
use shared::NodeStatus;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

/// What a frame says about execution.
pub enum JobLine {
    /// The journal's newest running job.
    Running(JobView),
    None,
    /// The journal could not be read (missing, or no permission): why.
    Unavailable(String),
}

fn bar(percent: f64, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// One frame. `color`: ANSI colours for nodes at or above 85 % (and offline ones).
pub fn render(view: &ClusterView, job: &JobLine, now: u64, color: bool) -> String {
    let (red, yellow, reset) = if color { ("\x1b[31m", "\x1b[33m", "\x1b[0m") } else { ("", "", "") };
    let snap = &view.snapshot;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "pve-rebalancer status: cluster {} (PVE {}), {} nodes, {} guests, at {now}",
        if snap.cluster_name.is_empty() { "-" } else { &snap.cluster_name },
        if snap.pve_version.is_empty() { "?" } else { &snap.pve_version },
        snap.nodes.len(),
        snap.guests.len(),
    );
    let _ = writeln!(
        o,
        "{:<16} {:<12} {:>6} {:<22} {:>6} {:<22} {:>6}",
        "NODE", "STATUS", "CPU%", "", "MEM%", "", "GUESTS"
    );
    for n in &snap.nodes {
        let pct =
            |loads: &[shared::NodeLoad]| loads.iter().find(|l| l.node == n.name).map_or(0.0, |l| l.percent);
        let (cpu, mem) = (pct(&view.cpu), pct(&view.memory));
        let status = match (n.status, n.maintenance) {
            (NodeStatus::Online, false) => "online",
            (NodeStatus::Online, true) => "maintenance",
            _ => "offline",
        };
        let guests = snap.guests.iter().filter(|g| g.node == n.name && !g.template).count();
        let hot = cpu >= 85.0 || mem >= 85.0;
        let (on, off) = match (status, hot) {
            ("offline", _) => (red, reset),
            (_, true) => (yellow, reset),
            _ => ("", ""),
        };
        let _ = writeln!(
            o,
            "{on}{:<16} {:<12} {:>6.1} {:<22} {:>6.1} {:<22} {:>6}{off}",
            n.name,
            status,
            cpu,
            bar(cpu, 20),
            mem,
            bar(mem, 20),
            guests
        );
    }
    let _ = writeln!(
        o,
        "imbalance: memory spread {:.1} points, cpu spread {:.1} points (max - min over online nodes)",
        view.memory_spread, view.cpu_spread
    );
    match job {
        JobLine::Running(j) => {
            let c = &j.job.counts;
            let finished = j.steps.iter().filter(|s| s.state.is_terminal()).count();
            let _ = writeln!(
                o,
                "job {} by {}: {finished}/{} steps finished [{}] ({} running, {} done, {} failed)",
                j.job.id,
                j.job.started_by,
                j.steps.len(),
                bar(100.0 * finished as f64 / j.steps.len().max(1) as f64, 20),
                c.running,
                c.done,
                c.failed + c.unknown
            );
            for s in j.steps.iter().filter(|s| s.state == shared::api::StepState::Running) {
                let phase = s.phase.as_deref().unwrap_or("running");
                let _ = writeln!(o, "  {} {} {} -> {}: {phase}", s.vmid, s.name, s.from, s.to);
            }
        }
        JobLine::None => {
            let _ = writeln!(o, "job: none running");
        }
        JobLine::Unavailable(why) => {
            let _ = writeln!(o, "job: unknown ({why})");
        }
    }
    o
}

/// The newest running job in the journal at `path`, opened only if it exists (a status command
/// must not create one).
pub fn job_line(path: &Path) -> JobLine {
    if !path.exists() {
        return JobLine::Unavailable(format!("no journal at {}", path.display()));
    }
    let journal = match crate::execute::Journal::open(path) {
        Ok(j) => j,
        Err(e) => return JobLine::Unavailable(e.to_string()),
    };
    match journal.job_ids_in_state(shared::api::JobState::Running) {
        Ok(ids) => match ids.last().map(|id| journal.job(*id)) {
            Some(Ok(Some(v))) => JobLine::Running(v),
            Some(Err(e)) => JobLine::Unavailable(e.to_string()),
            _ => JobLine::None,
        },
        Err(e) => JobLine::Unavailable(e.to_string()),
    }
}

/// Prints frames every `interval` until interrupted, or one frame with `once`.
pub async fn run(
    pve: &crate::pve::PveClient,
    journal: &Path,
    interval: Duration,
    once: bool,
) -> anyhow::Result<()> {
    loop {
        let now = crate::unix_now();
        let snapshot = crate::collect::snapshot(pve, now).await?;
        let frame = render(&ClusterView::of(snapshot), &job_line(journal), now, !once);
        if once {
            print!("{frame}");
            return Ok(());
        }
        // Clear the screen and go home, then the frame: one write, so it does not flicker.
        println!("\x1b[2J\x1b[H{frame}(every {}s; Ctrl-C to stop)", interval.as_secs());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_proportion_and_stay_in_bounds() {
        assert_eq!(bar(50.0, 10), "#####.....");
        assert_eq!(bar(150.0, 4), "####");
        assert_eq!(bar(-3.0, 4), "....");
    }
}
