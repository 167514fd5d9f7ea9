//! Human-readable tables (what `-j` does not print).

use shared::api::JobView;
use shared::best_node::NodeRank;
use shared::{GuestKind, Plan};
use std::fmt::Write;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub(crate) fn kind(k: GuestKind) -> &'static str {
    match k {
        GuestKind::Qemu => "vm",
        GuestKind::Lxc => "ct",
    }
}

/// Columns padded to their widest cell (the last one unpadded).
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                let _ = writeln!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<w$}  ", w = width[i]);
            }
        }
    };
    line(head.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub(super) fn plan_table(plan: &Plan) -> String {
    let r = &plan.request;
    let lower = |d: &dyn std::fmt::Debug| format!("{d:?}").to_lowercase();
    let mut out = format!(
        "Plan: {} migrations; spread {:.1} → {:.1} points (method {}, mode {}, balanciness {})\n",
        plan.steps.len(),
        plan.spread_before,
        plan.spread_after,
        lower(&r.method),
        lower(&r.mode),
        r.balanciness
    );
    if !plan.steps.is_empty() {
        let rows: Vec<Vec<String>> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                vec![
                    (i + 1).to_string(),
                    s.vmid.to_string(),
                    s.name.clone(),
                    kind(s.kind).into(),
                    s.from.clone(),
                    s.to.clone(),
                    format!("{:?}", s.migration).to_lowercase(),
                    format!("{:.1} GiB", s.mem_bytes as f64 / GIB),
                    s.reason.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out += &table(&["#", "VMID", "NAME", "TYPE", "FROM", "TO", "HOW", "MEMORY", "WHY"], &rows);
    }
    let rows: Vec<Vec<String>> = plan
        .before
        .iter()
        .map(|b| {
            let after = plan.after.iter().find(|a| a.node == b.node).map_or(b.percent, |a| a.percent);
            vec![b.node.clone(), format!("{:.1}%", b.percent), format!("{after:.1}%")]
        })
        .collect();
    out.push('\n');
    out += &table(&["NODE", "BEFORE", "AFTER"], &rows);
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for w in &plan.why_not {
        let _ = writeln!(out, "stays: {} ({}) on {}: {}", w.vmid, w.name, w.node, w.reason);
    }
    out
}

pub(super) fn ranking_table(ranks: &[NodeRank]) -> String {
    let rows: Vec<Vec<String>> = ranks
        .iter()
        .map(|r| {
            vec![
                r.node.clone(),
                if r.fits { "yes" } else { "no" }.into(),
                format!("{:.2}", r.score),
                format!("{:.1}%", r.use_after),
                r.reason.clone(),
            ]
        })
        .collect();
    table(&["NODE", "FITS", "SCORE", "USE AFTER", "WHY"], &rows)
}

pub(crate) fn job_table(v: &JobView) -> String {
    let rows: Vec<Vec<String>> = v
        .steps
        .iter()
        .map(|s| {
            vec![
                s.vmid.to_string(),
                s.from.clone(),
                s.to.clone(),
                s.state.as_str().into(),
                s.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!("job {}: {}\n", v.job.id, v.job.state.as_str())
        + &table(&["VMID", "FROM", "TO", "STATE", "MESSAGE"], &rows)
}
