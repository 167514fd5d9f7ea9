//! Pure helpers for what the views show; kept out of the components so they test natively.

use shared::api::ApiError;

const GIB: f64 = (1u64 << 30) as f64;

/// "12.3 GiB"
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB)
}

/// A bar's width in percent, clamped to 0–100 (over-committed nodes fill the bar, not overflow it).
pub fn bar_width(percent: f64) -> f64 {
    if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// The bar's severity class: PVE's own thresholds for its usage bars (warning 80%, critical 90%).
pub fn bar_class(percent: f64) -> &'static str {
    if percent >= 90.0 {
        "pvrb-bar pvrb-critical"
    } else if percent >= 80.0 {
        "pvrb-bar pvrb-warning"
    } else {
        "pvrb-bar"
    }
}

/// One line for an API error: what failed, PVE's or the backend's detail, the field at fault.
pub fn api_error(status: u16, e: &ApiError) -> String {
    match &e.field {
        Some(field) => format!("{} ({}): {} [HTTP {status}]", e.error, field, e.detail),
        None => format!("{}: {} [HTTP {status}]", e.error, e.detail),
    }
}

/// "1 migration", "3 migrations".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "45 s", "3 min 20 s", "1 h 05 min".
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// What the estimate assumes: PVE's default migration network moves roughly 1 GiB/s, each
/// migration has some fixed setup, and the executor runs two at a time (its default).
pub const ASSUMED_GIB_PER_SEC: f64 = 1.0;
pub const ASSUMED_SETUP_SECS: f64 = 5.0;
pub const ASSUMED_PARALLEL: usize = 2;

/// Rough wall time for moving these sizes (GiB each): longest-first onto `parallel` lanes.
pub fn estimate_secs(gib: &[f64], parallel: usize) -> f64 {
    let mut each: Vec<f64> = gib.iter().map(|g| ASSUMED_SETUP_SECS + g / ASSUMED_GIB_PER_SEC).collect();
    each.sort_by(|a, b| b.total_cmp(a));
    let mut lanes = vec![0.0f64; parallel.max(1)];
    for t in each {
        let lane = lanes.iter_mut().min_by(|a, b| a.total_cmp(b)).expect("at least one lane");
        *lane += t;
    }
    lanes.into_iter().fold(0.0, f64::max)
}

/// How PVE will move the guest, in the words an operator cares about.
pub fn migration(kind: shared::MigrationKind) -> &'static str {
    match kind {
        shared::MigrationKind::Live => "live",
        shared::MigrationKind::Restart => "restart (brief downtime)",
        shared::MigrationKind::Offline => "offline",
    }
}

/// Local wall-clock time "2026-11-22 14:05:09" of Unix seconds, given the offset east of UTC
/// in minutes (the browser's; the native tests pass it in).
pub fn clock(unix: u64, offset_east_min: i64) -> String {
    let t = unix as i64 + offset_east_min * 60;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm): no calendar crate for one line of output.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Coefficient of variation (population standard deviation / mean) of node percentages,
/// divided by its largest possible value √(n − 1), so 0 = even and 1 = all load on one node
/// whatever the node count. 0 with fewer than two nodes or no load.
pub fn normalised_cv(percent: &[f64]) -> f64 {
    let n = percent.len();
    if n < 2 {
        return 0.0;
    }
    let mean = percent.iter().sum::<f64>() / n as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = percent.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n as f64;
    (var.sqrt() / mean / ((n - 1) as f64).sqrt()).clamp(0.0, 1.0)
}

/// Whether balancing leaves `node` alone: an entry of `ignore_nodes` names it, or ends in `*`
/// and is a prefix of it (ProxLB's wildcard).
pub fn ignored(node: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => node.starts_with(prefix),
        None => p == node,
    })
}

/// SVG polyline points for a sparkline `width`×`height` of percentages (0–100, higher is up);
/// a missing sample breaks nothing, it is skipped.
pub fn sparkline(values: &[Option<f64>], width: f64, height: f64) -> String {
    let step = if values.len() > 1 { width / (values.len() - 1) as f64 } else { 0.0 };
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v.filter(|v| v.is_finite()) else { continue };
        let y = height - v.clamp(0.0, 100.0) / 100.0 * height;
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{:.1},{:.1}", i as f64 * step, y));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_counts_and_clocks() {
        assert_eq!(duration(44.6), "45 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(3900.0), "1 h 05 min");
        assert_eq!(count(1, "migration", "migrations"), "1 migration");
        assert_eq!(count(0, "migration", "migrations"), "0 migrations");
        assert_eq!(clock(0, 0), "1970-01-01 00:00:00");
        assert_eq!(clock(1_795_000_000, 60), "2026-11-18 12:06:40");
        assert_eq!(clock(951_782_400, 0), "2000-02-29 00:00:00");
    }

    #[test]
    fn estimates_spread_over_two_lanes() {
        // 5 s setup each: lanes [10+5] and [4+5, 2+5] → 16 s.
        assert_eq!(estimate_secs(&[10.0, 4.0, 2.0], 2), 16.0);
        assert_eq!(estimate_secs(&[], 2), 0.0);
        assert_eq!(estimate_secs(&[1.0, 1.0], 1), 12.0);
    }

    #[test]
    fn imbalance_figures() {
        assert_eq!(normalised_cv(&[50.0, 50.0, 50.0]), 0.0);
        // All load on one of four nodes is the worst case.
        assert!((normalised_cv(&[80.0, 0.0, 0.0, 0.0]) - 1.0).abs() < 1e-9);
        // [30, 50]: mean 40, sd 10 → cv 0.25, √1 = 1.
        assert!((normalised_cv(&[30.0, 50.0]) - 0.25).abs() < 1e-9);
        assert_eq!(normalised_cv(&[70.0]), 0.0);
        assert_eq!(normalised_cv(&[0.0, 0.0]), 0.0);
        let list = vec!["pve9".to_owned(), "gpu*".to_owned()];
        assert!(ignored("pve9", &list) && ignored("gpu-01", &list));
        assert!(!ignored("pve90", &list) && !ignored("pve1", &list));
    }

    #[test]
    fn sparkline_points_scale_and_skip_gaps() {
        assert_eq!(sparkline(&[Some(0.0), None, Some(100.0)], 100.0, 20.0), "0.0,20.0 100.0,0.0");
        assert_eq!(sparkline(&[Some(50.0)], 100.0, 20.0), "0.0,10.0");
        assert_eq!(sparkline(&[Some(150.0), Some(f64::NAN)], 10.0, 10.0), "0.0,0.0");
        assert_eq!(sparkline(&[], 10.0, 10.0), "");
    }

    #[test]
    fn bars_clamp_and_classify() {
        assert_eq!(bar_width(130.0), 100.0);
        assert_eq!(bar_width(-1.0), 0.0);
        assert_eq!(bar_width(f64::NAN), 0.0);
        assert_eq!(bar_class(79.9), "pvrb-bar");
        assert_eq!(bar_class(80.0), "pvrb-bar pvrb-warning");
        assert_eq!(bar_class(95.0), "pvrb-bar pvrb-critical");
    }

    #[test]
    fn sizes_and_errors_read_plainly() {
        assert_eq!(gib(3 << 29), "1.5 GiB");
        let e = ApiError {
            error: "invalid request".into(),
            detail: "5000 is too big".into(),
            field: Some("max_moves".into()),
        };
        assert_eq!(api_error(400, &e), "invalid request (max_moves): 5000 is too big [HTTP 400]");
    }
}
