//! PVE answers as they arrive: Perl-generated JSON where a number may come as a string, a
//! boolean as `0`/`1`, and any field may be missing. Rows are read leniently from
//! `serde_json::Value` so one odd field never fails a whole collection.

use serde_json::Value;

/// A number, whether PVE sent `5`, `5.0` or `"5"`; `None` when absent or not numeric.
pub fn number(row: &Value, key: &str) -> Option<f64> {
    match row.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// A byte count (or other non-negative integer); negatives and garbage read as 0.
pub fn bytes(row: &Value, key: &str) -> u64 {
    number(row, key).map_or(0, |x| if x > 0.0 { x as u64 } else { 0 })
}

/// PVE's boolean: `1`, `true`, `"1"`.
pub fn flag(row: &Value, key: &str) -> bool {
    number(row, key).is_some_and(|x| x != 0.0)
}

pub fn text<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_tolerate_strings_nulls_and_garbage() {
        let row = json!({"a": 5, "b": "7.5", "c": null, "d": "x", "e": -3, "f": true});
        assert_eq!(number(&row, "a"), Some(5.0));
        assert_eq!(number(&row, "b"), Some(7.5));
        assert_eq!(number(&row, "c"), None);
        assert_eq!(number(&row, "d"), None);
        assert_eq!(bytes(&row, "e"), 0);
        assert_eq!(bytes(&row, "missing"), 0);
        assert!(flag(&row, "f"));
        assert!(!flag(&row, "c"));
    }
}
