//! The backend's routes as the source declares them, and as `docs/API.md` lists them.
//!
//! Discovered at test time from every `.route("path", get(..).post(..))` in `backend/src/**/*.rs`,
//! so a route added anywhere is checked by the security, documentation and OpenAPI tests without
//! anyone registering it in a list.

use crate::workspace_root;
use std::collections::BTreeSet;

/// Routes anyone may call.
pub const PUBLIC: [&str; 4] = ["/api/v1/health", "/api/v1/login", "/api/v1/logout", "/api/health"];

/// `(METHOD, path)` of every `.route("path", get(..).post(..))` in the backend's sources.
pub fn in_source() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![workspace_root().join("backend/src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read backend/src") {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a backend source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(\"") {
            let after = &rest[at + ".route(\"".len()..];
            let end = after.find('"').expect("closing quote");
            let path = &after[..end];
            // The route's arguments: up to the `)` closing `.route(`.
            let args = &after[end..];
            let mut depth = 1i32;
            let mut stop = args.len();
            for (i, c) in args.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &args[..stop];
            for m in ["get", "post", "put", "delete", "patch"] {
                let bare = args.match_indices(&format!("{m}(")).any(|(i, _)| {
                    i == 0
                        || !args.as_bytes()[i - 1].is_ascii_alphanumeric() && args.as_bytes()[i - 1] != b'_'
                });
                if bare {
                    out.insert((m.to_uppercase(), path.to_owned()));
                }
            }
            rest = &after[end..];
        }
    }
    out
}

/// `(METHOD, path)` of the routes docs/API.md lists (`` `GET /api/v1/...` ``).
pub fn in_docs() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("docs/API.md")).expect("docs/API.md");
    let mut out = BTreeSet::new();
    for piece in text.split('`') {
        let mut words = piece.split_whitespace();
        if let (Some(m), Some(p)) = (words.next(), words.next()) {
            if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m)
                && (p.starts_with("/api/") || p == "/metrics")
            {
                out.insert((m.to_owned(), p.to_owned()));
            }
        }
    }
    out
}

/// A route path with every `{param}` replaced by `1`, to call it.
pub fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') || seg.starts_with(':') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
