//! The Rules view's rows. Tags yield one constraint per tagged guest; a reader wants one row per
//! group ("web: 100, 101, 200 on different nodes"), with every source that contributed.

use shared::rules::{Constraint, ConstraintKind, Strength};
use shared::ClusterSnapshot;

#[derive(Clone, Debug, PartialEq)]
pub struct RuleRow {
    /// "apart", "together", "pin", "ignore", "ignore node", "maintenance".
    pub what: &'static str,
    pub words: String,
    pub hard: bool,
    /// Where it comes from, each once, in the order met.
    pub sources: Vec<String>,
}

fn guests(s: &ClusterSnapshot, vmids: &[u32]) -> String {
    vmids
        .iter()
        .map(|v| match s.guests.iter().find(|g| g.vmid == *v) {
            Some(g) => format!("{v} ({})", g.name),
            None => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row per constraint, except that together/apart constraints of the same group and
/// strength are merged (members in vmid order).
pub fn rows(s: &ClusterSnapshot, constraints: &[Constraint]) -> Vec<RuleRow> {
    // (what, group, hard) → (vmids, sources), in first-seen order.
    type Key = (&'static str, String, bool);
    let mut groups: Vec<(Key, Vec<u32>, Vec<String>)> = Vec::new();
    enum Slot {
        Row(RuleRow),
        /// Index into `groups`: the row goes where the group was first met.
        Group(usize),
    }
    let mut out: Vec<Slot> = Vec::new();
    for c in constraints {
        let hard = c.strength == Strength::Hard;
        let source = c.source.to_string();
        let (what, words) = match &c.kind {
            ConstraintKind::Together { group, vmids } | ConstraintKind::Apart { group, vmids } => {
                let what = if matches!(c.kind, ConstraintKind::Apart { .. }) { "apart" } else { "together" };
                let key = (what, group.clone(), hard);
                match groups.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, members, sources)) => {
                        members.extend(vmids);
                        if !sources.contains(&source) {
                            sources.push(source);
                        }
                    }
                    None => {
                        groups.push((key, vmids.clone(), vec![source]));
                        out.push(Slot::Group(groups.len() - 1));
                    }
                }
                continue;
            }
            ConstraintKind::Ignore { vmid } => {
                ("ignore", format!("{} is never moved by balancing", guests(s, &[*vmid])))
            }
            ConstraintKind::Pin { vmid, nodes } => {
                let how = if hard { "only on" } else { "preferably on" };
                ("pin", format!("{} runs {how} {}", guests(s, &[*vmid]), nodes.join(", ")))
            }
            ConstraintKind::IgnoreNode { node } => {
                ("ignore node", format!("{node} neither gives nor takes guests"))
            }
            ConstraintKind::Maintenance { node } => ("maintenance", format!("{node} is drained")),
        };
        out.push(Slot::Row(RuleRow { what, words, hard, sources: vec![source] }));
    }
    out.into_iter()
        .map(|slot| {
            let g = match slot {
                Slot::Row(row) => return row,
                Slot::Group(g) => g,
            };
            let ((what, group, hard), mut members, sources) = groups[g].clone();
            members.sort_unstable();
            members.dedup();
            let how = if what == "apart" { "on different nodes" } else { "on one node" };
            RuleRow { what, words: format!("'{group}': {} {how}", guests(s, &members)), hard, sources }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::rules::RuleSource;
    use shared::Guest;

    fn apart(vmid: u32, group: &str) -> Constraint {
        Constraint {
            kind: ConstraintKind::Apart { group: group.into(), vmids: vec![vmid] },
            strength: Strength::Hard,
            source: RuleSource::Tag { vmid, tag: format!("plb_anti_affinity_{group}") },
        }
    }

    #[test]
    fn groups_merge_into_one_row_with_every_source() {
        let s = ClusterSnapshot {
            guests: vec![Guest { vmid: 100, name: "web-01".into(), ..Guest::default() }],
            ..ClusterSnapshot::default()
        };
        let pin = Constraint {
            kind: ConstraintKind::Pin { vmid: 102, nodes: vec!["pve1".into()] },
            strength: Strength::Soft,
            source: RuleSource::HaRule { rule: "r1".into() },
        };
        let rows = rows(&s, &[apart(200, "web"), pin, apart(100, "web"), apart(300, "dns")]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].words, "'web': 100 (web-01), 200 on different nodes");
        assert_eq!(
            rows[0].sources,
            vec!["tag 'plb_anti_affinity_web' on 200", "tag 'plb_anti_affinity_web' on 100"]
        );
        assert_eq!((rows[1].what, rows[1].hard), ("pin", false));
        assert_eq!(rows[1].words, "102 runs preferably on pve1");
        assert_eq!(rows[2].words, "'dns': 300 on different nodes");
    }
}
