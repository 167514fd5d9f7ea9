//! The Guests table's logic: filter, sort and page thousands of guests without touching the DOM
//! for rows nobody sees (the view renders one page).

use shared::{ClusterSnapshot, Guest, GuestKind};
use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Vmid,
    Name,
    Kind,
    Node,
    Status,
    Cpu,
    Memory,
    Disk,
    Tags,
    Ha,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    /// Clicking a header: same column flips the order; a new column starts ascending, except for
    /// usage columns, where the biggest first is what one looks for.
    pub fn clicked(self, key: SortKey) -> Sort {
        if self.key == key {
            Sort { key, descending: !self.descending }
        } else {
            Sort { key, descending: matches!(key, SortKey::Cpu | SortKey::Memory | SortKey::Disk) }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Matches the vmid, the name (case-insensitive substring) or a tag.
    pub text: String,
    /// Exact node name; empty = all.
    pub node: String,
    pub kind: Option<GuestKind>,
    /// `Some(true)` HA-managed only, `Some(false)` not HA-managed only.
    pub ha: Option<bool>,
    /// A tag (case-insensitive substring of one of the guest's tags); empty = any.
    pub tag: String,
    /// Memory in use at least this many GiB.
    pub min_mem_gib: Option<f64>,
}

impl Filter {
    pub fn matches(&self, g: &Guest) -> bool {
        let text = self.text.trim().to_lowercase();
        let tag = self.tag.trim().to_lowercase();
        (text.is_empty()
            || g.vmid.to_string().starts_with(&text)
            || g.name.to_lowercase().contains(&text)
            || g.tags.iter().any(|t| t.to_lowercase().contains(&text)))
            && (self.node.is_empty() || g.node == self.node)
            && self.kind.is_none_or(|k| g.kind == k)
            && self.ha.is_none_or(|ha| g.ha_managed == ha)
            && (tag.is_empty() || g.tags.iter().any(|t| t.to_lowercase().contains(&tag)))
            && self.min_mem_gib.is_none_or(|min| g.mem_used as f64 >= min * (1u64 << 30) as f64)
    }
}

/// Sorted by the word shown, not by `Debug` (the panel is built with `-Zfmt-debug=none`).
fn status_word(s: shared::GuestStatus) -> &'static str {
    match s {
        shared::GuestStatus::Running => "running",
        shared::GuestStatus::Stopped => "stopped",
        shared::GuestStatus::Other => "other",
    }
}

fn compare(a: &Guest, b: &Guest, key: SortKey) -> Ordering {
    let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match key {
        SortKey::Vmid => a.vmid.cmp(&b.vmid),
        SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
        SortKey::Kind => a.kind.cmp(&b.kind),
        SortKey::Node => a.node.cmp(&b.node),
        SortKey::Status => status_word(a.status).cmp(status_word(b.status)),
        SortKey::Cpu => f(a.cpu_used, b.cpu_used),
        SortKey::Memory => a.mem_used.cmp(&b.mem_used),
        SortKey::Disk => a.disk_max.cmp(&b.disk_max),
        SortKey::Tags => a.tags.join(";").cmp(&b.tags.join(";")),
        SortKey::Ha => a.ha_managed.cmp(&b.ha_managed),
    }
}

/// Indices into `snapshot.guests` of the guests that pass `filter`, in `sort` order (ties by
/// vmid, so the order is stable across refreshes).
pub fn rows(snapshot: &ClusterSnapshot, filter: &Filter, sort: Sort) -> Vec<usize> {
    let mut idx: Vec<usize> =
        (0..snapshot.guests.len()).filter(|&i| filter.matches(&snapshot.guests[i])).collect();
    idx.sort_by(|&i, &j| {
        let (a, b) = (&snapshot.guests[i], &snapshot.guests[j]);
        let o = compare(a, b, sort.key);
        let o = if sort.descending { o.reverse() } else { o };
        o.then(a.vmid.cmp(&b.vmid))
    });
    idx
}

/// One page of `total` rows: the range to show and the page actually shown (clamped, so a filter
/// that shrinks the list never leaves the user on an empty page).
pub fn page(total: usize, page: usize, size: usize) -> (std::ops::Range<usize>, usize) {
    let size = size.max(1);
    let pages = total.div_ceil(size).max(1);
    let page = page.min(pages - 1);
    (page * size..((page + 1) * size).min(total), page)
}

/// Number of pages (at least one).
pub fn pages(total: usize, size: usize) -> usize {
    total.div_ceil(size.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u32, name: &str, node: &str, mem_gib: u64, tags: &[&str], ha: bool) -> Guest {
        Guest {
            vmid,
            name: name.into(),
            node: node.into(),
            mem_used: mem_gib << 30,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ha_managed: ha,
            kind: if vmid.is_multiple_of(2) { GuestKind::Qemu } else { GuestKind::Lxc },
            ..Guest::default()
        }
    }

    fn snap() -> ClusterSnapshot {
        ClusterSnapshot {
            guests: vec![
                guest(102, "db-01", "pve1", 32, &["plb_pin_pve1"], false),
                guest(101, "web-02", "pve1", 8, &["web"], true),
                guest(200, "Web-03", "pve2", 16, &["web"], false),
                guest(305, "k8s", "pve3", 4, &[], false),
            ],
            ..ClusterSnapshot::default()
        }
    }

    fn vmids(s: &ClusterSnapshot, idx: &[usize]) -> Vec<u32> {
        idx.iter().map(|&i| s.guests[i].vmid).collect()
    }

    #[test]
    fn filters_combine() {
        let s = snap();
        let all = Sort::default();
        assert_eq!(vmids(&s, &rows(&s, &Filter::default(), all)), vec![101, 102, 200, 305]);
        let web = Filter { text: "WEB".into(), ..Filter::default() };
        assert_eq!(vmids(&s, &rows(&s, &web, all)), vec![101, 200]);
        let by_id = Filter { text: "30".into(), ..Filter::default() };
        assert_eq!(vmids(&s, &rows(&s, &by_id, all)), vec![305]);
        let f = Filter { node: "pve1".into(), ha: Some(false), ..Filter::default() };
        assert_eq!(vmids(&s, &rows(&s, &f, all)), vec![102]);
        let f = Filter { tag: "pin".into(), ..Filter::default() };
        assert_eq!(vmids(&s, &rows(&s, &f, all)), vec![102]);
        let f = Filter { kind: Some(GuestKind::Lxc), min_mem_gib: Some(5.0), ..Filter::default() };
        assert_eq!(vmids(&s, &rows(&s, &f, all)), vec![101]);
    }

    #[test]
    fn sorting_flips_and_usage_starts_biggest_first() {
        let s = snap();
        let by_mem = Sort::default().clicked(SortKey::Memory);
        assert!(by_mem.descending);
        assert_eq!(vmids(&s, &rows(&s, &Filter::default(), by_mem)), vec![102, 200, 101, 305]);
        let by_name = by_mem.clicked(SortKey::Name);
        assert_eq!(vmids(&s, &rows(&s, &Filter::default(), by_name)), vec![102, 305, 101, 200]);
        assert_eq!(vmids(&s, &rows(&s, &Filter::default(), by_name.clicked(SortKey::Name)))[0], 200);
    }

    #[test]
    fn pages_clamp() {
        assert_eq!(page(3000, 0, 100), (0..100, 0));
        assert_eq!(page(3000, 29, 100), (2900..3000, 29));
        assert_eq!(page(250, 9, 100), (200..250, 2));
        assert_eq!(page(0, 3, 100), (0..0, 0));
        assert_eq!(pages(0, 100), 1);
        assert_eq!(pages(201, 100), 3);
    }

    #[test]
    fn three_thousand_guests_filter_and_sort() {
        let mut s = ClusterSnapshot::default();
        for i in 0..3000u32 {
            s.guests.push(guest(
                100 + i,
                &format!("vm-{i}"),
                &format!("pve{}", i % 32),
                (i % 64) as u64,
                &["t"],
                i % 7 == 0,
            ));
        }
        let r = rows(
            &s,
            &Filter { text: "vm-1".into(), ..Filter::default() },
            Sort::default().clicked(SortKey::Memory),
        );
        assert_eq!(r.len(), 1111);
        let mem = |i: usize| s.guests[r[i]].mem_used;
        assert!(mem(0) >= mem(1110));
    }
}
