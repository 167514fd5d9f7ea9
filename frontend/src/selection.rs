//! Which plan steps run. The backend runs steps by vmid and refuses a selected step that depends
//! on an unselected one, so selecting a step pulls in what it depends on, and deselecting one
//! drops what depends on it. Steps of the same guest (a park hop and its onward move) go
//! together, since the request names guests, not steps.

use shared::PlanStep;
use std::collections::BTreeSet;

/// Every step selected.
pub fn all(steps: &[PlanStep]) -> BTreeSet<usize> {
    (0..steps.len()).collect()
}

/// Turns step `index` on or off, with everything that must follow.
pub fn set(steps: &[PlanStep], selected: &mut BTreeSet<usize>, index: usize, on: bool) {
    let mut todo = vec![index];
    while let Some(i) = todo.pop() {
        if i >= steps.len() || selected.contains(&i) == on {
            continue;
        }
        if on {
            selected.insert(i);
            todo.extend(steps[i].depends_on.iter().copied());
        } else {
            selected.remove(&i);
            todo.extend(steps.iter().enumerate().filter(|(_, s)| s.depends_on.contains(&i)).map(|(j, _)| j));
        }
        let vmid = steps[i].vmid;
        todo.extend(steps.iter().enumerate().filter(|(_, s)| s.vmid == vmid).map(|(j, _)| j));
    }
}

/// The vmids to send with `POST /api/v1/plan/execute`, in plan order, once each; `None` when every
/// step is selected (the backend then runs the whole plan).
pub fn vmids(steps: &[PlanStep], selected: &BTreeSet<usize>) -> Option<Vec<u32>> {
    if selected.len() == steps.len() {
        return None;
    }
    let mut out: Vec<u32> = Vec::new();
    for i in selected {
        if let Some(s) = steps.get(*i) {
            if !out.contains(&s.vmid) {
                out.push(s.vmid);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(vmid: u32, depends_on: Vec<usize>) -> PlanStep {
        PlanStep {
            vmid,
            name: format!("g{vmid}"),
            kind: shared::GuestKind::Qemu,
            from: "a".into(),
            to: "b".into(),
            migration: shared::MigrationKind::Live,
            mem_bytes: 1 << 30,
            reason: String::new(),
            purpose: Default::default(),
            depends_on,
            disk_bytes: 0,
        }
    }

    #[test]
    fn dependencies_follow_the_selection_both_ways() {
        // 0 ← 1 ← 2, and 3 independent.
        let steps = vec![step(10, vec![]), step(11, vec![0]), step(12, vec![1]), step(13, vec![])];
        let mut sel = all(&steps);
        assert_eq!(vmids(&steps, &sel), None);
        set(&steps, &mut sel, 0, false);
        assert_eq!(sel, BTreeSet::from([3]), "dropping 0 drops what waits on it");
        assert_eq!(vmids(&steps, &sel), Some(vec![13]));
        set(&steps, &mut sel, 2, true);
        assert_eq!(sel, BTreeSet::from([0, 1, 2, 3]), "picking 2 picks what it waits on");
    }

    #[test]
    fn steps_of_one_guest_go_together() {
        let steps = vec![step(10, vec![]), step(20, vec![]), step(10, vec![1])];
        let mut sel = BTreeSet::new();
        set(&steps, &mut sel, 0, true);
        assert_eq!(sel, BTreeSet::from([0, 1, 2]));
        set(&steps, &mut sel, 1, false);
        assert!(sel.is_empty());
        set(&steps, &mut sel, 1, true);
        assert_eq!(vmids(&steps, &sel), Some(vec![20]));
    }
}
