//! Recent migrations from PVE's cluster task list, for the engine's anti-ping-pong rules
//! (`cooldown_secs`: a guest moved recently is left alone; `no_return_secs`: it does not go
//! back to a node it just left).
//!
//! PVE's `/cluster/tasks` lists every node's recent tasks in one call, whoever started them
//! (us, ProxLB, the HA manager, an admin), so a guest someone else just moved also cools down.
//! A finished `qmigrate`/`vzmigrate` with status `OK` ran on the source node; the task list has
//! no target, so the target is where the guest is now. Planning without this list still works
//! (the rules just have nothing to go on), so a refused call is logged, not fatal; the list is the
//! one [`crate::collect::collect`] read.

use crate::collect::Collected;
use crate::pve::PveClient;
use serde_json::Value;
use shared::model::RecentMigration;
use shared::plan::PlanRequest;
use shared::ClusterSnapshot;

/// Tasks stamped this far past PVE's own clock are from a node with a skewed clock: not "recent".
const MAX_SKEW_SECS: u64 = 300;

/// The collected snapshot for a balance plan: `recent_migrations` filled with the migrations of
/// the task list collected with it that ended within the horizon of `request`'s cooldown and
/// no-return rules.
///
/// Task end times are stamped by PVE's clock, so their age is measured on it (the `Date` of PVE's
/// answer): a node whose clock differs from PVE's (or a simulated cluster) still sees a migration
/// a minute old as a minute old. Ages are then put on our clock (`collected_at − age`), where the
/// engine compares them.
pub fn for_plan(collected: Collected, pve: &PveClient, request: &PlanRequest) -> ClusterSnapshot {
    let Collected { mut snapshot, tasks } = collected;
    let pve_now = pve.server_now().unwrap_or(snapshot.collected_at);
    let horizon = request.cooldown_secs.max(request.no_return_secs);
    snapshot.recent_migrations = from_tasks(&tasks, &snapshot, pve_now, horizon);
    snapshot
}

/// Pure: the task rows → recent migrations, newest first. `pve_now` is PVE's clock when it
/// listed the tasks; the result's times are on `snapshot.collected_at`'s clock.
pub fn from_tasks(
    rows: &[Value],
    snapshot: &ClusterSnapshot,
    pve_now: u64,
    horizon_secs: u64,
) -> Vec<RecentMigration> {
    let now = snapshot.collected_at;
    // The task rows are read by the one parser of PVE's task list (the back-test's).
    let mut out: Vec<RecentMigration> = crate::history::migrations_from_tasks(rows)
        .into_iter()
        .filter_map(|m| {
            let age = pve_now.saturating_sub(m.at);
            if m.at > pve_now + MAX_SKEW_SECS || age > horizon_secs {
                return None;
            }
            let to = &snapshot.guests.iter().find(|g| g.vmid == m.vmid)?.node;
            (*to != m.from).then(|| RecentMigration {
                vmid: m.vmid,
                from: m.from,
                to: to.clone(),
                at: now.saturating_sub(age),
            })
        })
        .collect();
    out.sort_by(|a, b| b.at.cmp(&a.at).then(a.vmid.cmp(&b.vmid)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::Guest;

    fn snap(now: u64) -> ClusterSnapshot {
        let guest = |vmid: u32, node: &str| Guest { vmid, node: node.into(), ..Default::default() };
        ClusterSnapshot {
            collected_at: now,
            guests: vec![guest(100, "b"), guest(101, "a"), guest(102, "c")],
            ..Default::default()
        }
    }

    #[test]
    fn finished_migrations_within_the_horizon_with_the_guest_now_elsewhere() {
        let now = 1_000_000;
        let rows = vec![
            json!({"type": "qmigrate", "id": "100", "node": "a", "status": "OK", "endtime": now - 60}),
            // failed, still running, another type, too old, from the future, back where it was
            json!({"type": "qmigrate", "id": "101", "node": "b", "status": "migration aborted", "endtime": now - 5}),
            json!({"type": "vzmigrate", "id": "102", "node": "a", "starttime": now - 5}),
            json!({"type": "vzdump", "id": "102", "node": "c", "status": "OK", "endtime": now - 5}),
            json!({"type": "qmigrate", "id": "102", "node": "a", "status": "OK", "endtime": now - 7200}),
            json!({"type": "qmigrate", "id": "102", "node": "b", "status": "OK", "endtime": now + 86_400}),
            json!({"type": "qmigrate", "id": "101", "node": "a", "status": "OK", "endtime": now - 10}),
            // a container, numbers as strings (Perl)
            json!({"type": "vzmigrate", "id": "102", "node": "b", "status": "OK", "endtime": (now - 30).to_string()}),
        ];
        let got = from_tasks(&rows, &snap(now), now, 3600);
        assert_eq!(
            got,
            vec![
                RecentMigration { vmid: 102, from: "b".into(), to: "c".into(), at: now - 30 },
                RecentMigration { vmid: 100, from: "a".into(), to: "b".into(), at: now - 60 },
            ]
        );
    }

    #[test]
    fn ages_are_measured_on_pves_clock_and_placed_on_ours() {
        // PVE's clock runs a year ahead of ours (or it is a simulated cluster): a task that ended
        // a minute ago by PVE's clock is a minute old, not "from the future".
        let ours = 1_000_000;
        let pve_now = ours + 365 * 86_400;
        let rows = vec![
            json!({"type": "qmigrate", "id": "100", "node": "a", "status": "OK", "endtime": pve_now - 60}),
            json!({"type": "qmigrate", "id": "102", "node": "a", "status": "OK", "endtime": pve_now - 7200}),
        ];
        let got = from_tasks(&rows, &snap(ours), pve_now, 3600);
        assert_eq!(got, vec![RecentMigration { vmid: 100, from: "a".into(), to: "b".into(), at: ours - 60 }]);
        // Judged on our clock instead, every row would be from the future and dropped.
        assert!(from_tasks(&rows, &snap(ours), ours, 3600).is_empty());
    }

    #[test]
    fn the_engine_leaves_a_guest_that_just_moved_alone() {
        use shared::{Node, PlanRequest};
        let gib = 1u64 << 30;
        let node = |name: &str| Node {
            name: name.into(),
            mem_total: 64 * gib,
            cpus: 16,
            status: shared::NodeStatus::Online,
            ..Default::default()
        };
        let vm = |vmid: u32, at: &str| Guest {
            vmid,
            node: at.into(),
            mem_max: 16 * gib,
            mem_used: 16 * gib,
            status: shared::GuestStatus::Running,
            ..Default::default()
        };
        let now = 1_000_000;
        let mut s = ClusterSnapshot {
            collected_at: now,
            nodes: vec![node("a"), node("b")],
            guests: vec![vm(100, "a"), vm(101, "a"), vm(102, "a")],
            ..Default::default()
        };
        let req = PlanRequest::default();
        let moved = |s: &ClusterSnapshot| -> Vec<u32> {
            shared::planner::plan(s, &req).steps.iter().map(|st| st.vmid).collect()
        };
        assert!(!moved(&s).is_empty(), "unbalanced: something moves");
        // Every guest just arrived on a from b: nothing may move (cooldown), and nothing goes back.
        let rows: Vec<Value> = [100, 101, 102]
            .map(|v| json!({"type": "qmigrate", "id": v.to_string(), "node": "b", "status": "OK", "endtime": now - 60}))
            .to_vec();
        s.recent_migrations = from_tasks(&rows, &s, now, 6 * 3600);
        assert_eq!(s.recent_migrations.len(), 3);
        assert!(moved(&s).is_empty(), "{:?}", shared::planner::plan(&s, &req).steps);
    }
}
