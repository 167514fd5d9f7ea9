//! A running job as the panel shows it: one row per step, updated from the event stream (or from
//! polling `GET /jobs/{id}`), and a headline.

use shared::api::{JobState, JobSummary, JobView, StepCounts, StepView};
use shared::Plan;
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub job_id: u64,
    /// In plan order (by `StepView::index`).
    pub steps: Vec<StepView>,
    /// Set once the job has ended.
    pub end: Option<JobSummary>,
    /// How updates arrive: "live" (events) or "polling"; for the user's peace of mind.
    pub channel: &'static str,
    /// The last error talking to the service while following.
    pub error: Option<String>,
}

impl Progress {
    /// Rows for the selected steps, all queued, shown until the first event arrives.
    pub fn queued(job_id: u64, plan: &Plan, selected: &BTreeSet<usize>) -> Progress {
        let steps = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(i, _)| selected.contains(i))
            .map(|(index, s)| StepView::queued(index, s))
            .collect();
        Progress { job_id, steps, end: None, channel: "live", error: None }
    }

    /// One step's new state (events carry the whole step).
    pub fn update(&mut self, step: StepView) {
        match self.steps.binary_search_by_key(&step.index, |s| s.index) {
            Ok(i) => self.steps[i] = step,
            Err(i) => self.steps.insert(i, step),
        }
        self.error = None;
    }

    /// A full job view (polling).
    pub fn replace(&mut self, view: JobView) {
        for step in view.steps {
            self.update(step);
        }
        if view.job.state != JobState::Running {
            self.end = Some(view.job);
        }
    }

    pub fn finish(&mut self, job: JobSummary) {
        self.end = Some(job);
    }

    pub fn finished(&self) -> bool {
        self.end.is_some()
    }

    pub fn counts(&self) -> StepCounts {
        StepCounts::of(&self.steps)
    }

    /// "Job 7: running — 2 of 5 done, 1 running" / "Job 7 failed — 4 of 5 done, 1 failed".
    pub fn headline(&self) -> String {
        let c = self.counts();
        let state = self.end.as_ref().map_or("running", |e| e.state.as_str());
        let mut parts = vec![format!("{} of {} done", c.done, self.steps.len())];
        for (n, what) in [
            (c.running, "running"),
            (c.failed, "failed"),
            (c.skipped, "skipped"),
            (c.cancelled, "cancelled"),
            (c.unknown, "unknown — check in PVE"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("Job {}: {state} — {}", self.job_id, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::StepState;
    use shared::{GuestKind, MigrationKind, PlanRequest, PlanStep};

    fn plan(n: u32) -> Plan {
        let steps = (0..n)
            .map(|i| PlanStep {
                vmid: 100 + i,
                name: format!("g{i}"),
                kind: GuestKind::Qemu,
                from: "a".into(),
                to: "b".into(),
                migration: MigrationKind::Live,
                mem_bytes: 0,
                reason: String::new(),
                purpose: Default::default(),
                depends_on: vec![],
                disk_bytes: 0,
            })
            .collect();
        Plan {
            request: PlanRequest::default(),
            steps,
            before: vec![],
            after: vec![],
            spread_before: 0.0,
            spread_after: 0.0,
            notes: vec![],
            imbalance_before: 0.0,
            imbalance_after: 0.0,
            objective_before: 0.0,
            objective_after: 0.0,
            cv_before: 0.0,
            cv_after: 0.0,
            gib_moved: 0.0,
            why_not: vec![],
            diagnostics: vec![],
            remaining: None,
            priced_out: None,
            migration_secs: 0.0,
            n_plus_one: None,
            bandwidth: None,
        }
    }

    #[test]
    fn events_move_rows_and_the_headline_follows() {
        let mut p = Progress::queued(7, &plan(3), &BTreeSet::from([0, 2]));
        assert_eq!(p.steps.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(p.headline(), "Job 7: running — 0 of 2 done");
        let mut s = p.steps[1].clone();
        s.state = StepState::Failed;
        s.message = Some("migration aborted".into());
        p.update(s);
        let mut s = p.steps[0].clone();
        s.state = StepState::Done;
        p.update(s);
        assert_eq!(p.headline(), "Job 7: running — 1 of 2 done, 1 failed");
        p.finish(JobSummary {
            id: 7,
            state: JobState::Failed,
            started_by: "root@pam".into(),
            created_at: 0,
            finished_at: Some(1),
            message: None,
            counts: p.counts(),
        });
        assert!(p.finished());
        assert_eq!(p.headline(), "Job 7: failed — 1 of 2 done, 1 failed");
    }
}
