//! PVE task ids: `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:`.

/// The parts of a UPID the executor needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upid {
    /// Node the task runs on: its status lives at `/nodes/{node}/tasks/{upid}`.
    pub node: String,
    /// Unix seconds the task started (for `since=` in task lists).
    pub starttime: u64,
    /// `qmigrate`, `vzmigrate`, `hamigrate`, ...
    pub kind: String,
    pub id: String,
}

impl Upid {
    /// Parses a UPID; `None` for anything that is not one (PVE's answer is data, not trusted).
    pub fn parse(s: &str) -> Option<Upid> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let p: Vec<&str> = rest.split(':').collect();
        if p.len() != 7 || p[0].is_empty() || p[4].is_empty() {
            return None;
        }
        let valid_node = p[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let hex = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_hexdigit());
        if !valid_node || !hex(p[1]) || !hex(p[2]) || p[3].len() != 8 {
            return None;
        }
        Some(Upid {
            node: p[0].to_owned(),
            starttime: u64::from_str_radix(p[3], 16).ok()?,
            kind: p[4].to_owned(),
            id: p[5].to_owned(),
        })
    }

    pub fn is_ha_request(&self) -> bool {
        self.kind == "hamigrate"
    }
}

/// Percent-encodes a UPID for use as one path segment (it carries `:`, `@`, `!`).
pub fn path_segment(upid: &str) -> String {
    upid.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pve_upids_and_rejects_garbage() {
        let u = Upid::parse("UPID:pve1:00001001:01000007:6650A1B2:qmigrate:104:root@pam!tok:").unwrap();
        assert_eq!((u.node.as_str(), u.kind.as_str(), u.id.as_str()), ("pve1", "qmigrate", "104"));
        assert_eq!(u.starttime, 0x6650A1B2);
        assert!(!u.is_ha_request());
        assert!(Upid::parse("UPID:pve1:1:2:3:x:y:z:").is_none());
        assert!(Upid::parse("UPID:pve1:00001001:01000007:6650A1B2:qmigrate:104:root@pam").is_none());
        assert!(Upid::parse("").is_none());
        assert!(Upid::parse("UPID:pv e:00001001:01000007:6650A1B2:qmigrate:104:u:").is_none());
    }

    #[test]
    fn path_segments_escape_separators() {
        assert_eq!(path_segment("UPID:a:b!c@d:"), "UPID%3Aa%3Ab%21c%40d%3A");
    }
}
