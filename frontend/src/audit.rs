//! The History view's audit filter: by action, by user, and by free text (a node name, a job,
//! words of the detail). Pure, so it is unit-tested natively.

use shared::api::AuditEntry;

/// What the user picked; empty strings match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilter {
    pub action: String,
    pub user: String,
    /// Case-insensitive substring of the target (`node/pve2`, `job/7`), the detail or the user.
    pub text: String,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let text = self.text.trim().to_lowercase();
        (self.action.is_empty() || e.action == self.action)
            && (self.user.is_empty() || e.user == self.user)
            && (text.is_empty()
                || [&e.target, &e.detail, &e.user].iter().any(|f| f.to_lowercase().contains(&text)))
    }
}

/// The distinct values of one field, sorted, for the filter's choices.
pub fn choices(entries: &[AuditEntry], field: fn(&AuditEntry) -> &String) -> Vec<String> {
    let mut v: Vec<String> = entries.iter().map(|e| field(e).clone()).collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, action: &str, target: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            id: 1,
            at: 0,
            user: user.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
            job_id: None,
        }
    }

    #[test]
    fn each_field_narrows_and_empty_matches_all() {
        let log = [
            entry("root@pam", "maintenance.enter", "node/pve4", "3 guests to move"),
            entry("ops@pve", "settings.update", "settings", "balanciness 7"),
            entry("root@pam", "plan.execute", "job/2", "5 steps, pve1 → pve4"),
        ];
        let count = |f: &AuditFilter| log.iter().filter(|e| f.matches(e)).count();
        assert_eq!(count(&AuditFilter::default()), 3);
        assert_eq!(count(&AuditFilter { action: "settings.update".into(), ..Default::default() }), 1);
        assert_eq!(count(&AuditFilter { user: "root@pam".into(), ..Default::default() }), 2);
        // A node name matches the target and the detail, case-insensitively, spaces trimmed.
        assert_eq!(count(&AuditFilter { text: " PVE4 ".into(), ..Default::default() }), 2);
        let both = AuditFilter { action: "plan.execute".into(), text: "pve4".into(), ..Default::default() };
        assert_eq!(count(&both), 1);
        assert_eq!(count(&AuditFilter { text: "nowhere".into(), ..Default::default() }), 0);
    }

    #[test]
    fn choices_are_distinct_and_sorted() {
        let log = [entry("b", "x", "", ""), entry("a", "y", "", ""), entry("b", "x", "", "")];
        assert_eq!(choices(&log, |e| &e.user), vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(choices(&log, |e| &e.action), vec!["x".to_owned(), "y".to_owned()]);
    }
}
