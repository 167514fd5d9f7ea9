//! Finds the line and column of a key path in block-style YAML, so errors found after parsing
//! (impossible values, conflicting keys) can point into the file like parse errors do.
//! Flow-style mappings (`{a: 1}`) are not looked into; the nearest enclosing key is reported.

/// 1-based line and column of the value of `path` (or of the deepest enclosing key found).
pub(super) fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut best: Option<(usize, (usize, usize))> = None;
    for (lineno, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        // `- key: v` inside a list: the key sits two columns further in.
        let (indent, body) = match trimmed.strip_prefix("- ") {
            Some(rest) => (line.len() - trimmed.len() + 2, rest),
            None => (line.len() - trimmed.len(), trimmed),
        };
        let Some(colon) = key_colon(body) else { continue };
        let key = body[..colon].trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key));
        let depth = stack.len();
        if depth <= path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            let after = &body[colon + 1..];
            let value_col = indent + colon + 1 + (after.len() - after.trim_start().len()) + 1;
            if best.is_none_or(|(d, _)| depth > d) {
                best = Some((depth, (lineno + 1, value_col)));
            }
            if depth == path.len() {
                return Some((lineno + 1, value_col));
            }
        }
    }
    best.map(|(_, at)| at)
}

fn strip_comment(line: &str) -> &str {
    // A `#` after whitespace (or at the start) starts a comment, unless inside quotes.
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1].is_ascii_whitespace()) => {
                return line[..i].trim_end();
            }
            _ => {}
        }
    }
    line.trim_end()
}

/// The colon that ends a plain mapping key (`key:` or `key: value`).
fn key_colon(body: &str) -> Option<usize> {
    let i = body.find(':')?;
    let after = body[i + 1..].chars().next();
    (after.is_none() || after == Some(' ')).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_value() {
        let t = "proxmox_api:\n  hosts: [a]\n# c\nbalancing:\n  enable: true\n  method: ram   # x\n";
        assert_eq!(locate(t, &["balancing", "method"]), Some((6, 11)));
        assert_eq!(locate(t, &["balancing", "nope"]), Some((4, 11)));
        assert_eq!(locate(t, &["service"]), None);
    }
}
