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
        "bar critical"
    } else if percent >= 80.0 {
        "bar warning"
    } else {
        "bar"
    }
}

/// One line for an API error: what failed, PVE's or the backend's detail, the field at fault.
pub fn api_error(status: u16, e: &ApiError) -> String {
    match &e.field {
        Some(field) => format!("{} ({}): {} [HTTP {status}]", e.error, field, e.detail),
        None => format!("{}: {} [HTTP {status}]", e.error, e.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_clamp_and_classify() {
        assert_eq!(bar_width(130.0), 100.0);
        assert_eq!(bar_width(-1.0), 0.0);
        assert_eq!(bar_width(f64::NAN), 0.0);
        assert_eq!(bar_class(79.9), "bar");
        assert_eq!(bar_class(80.0), "bar warning");
        assert_eq!(bar_class(95.0), "bar critical");
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
