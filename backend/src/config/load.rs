//! Reading the file: YAML → typed config, unknown keys → warnings, bad values → errors that name
//! file, line, column, key and the fix.

use super::locate::locate;
use super::schema::{unknown_keys, ROOT};
use super::types::ProxlbConfig;
use std::path::Path;

/// One problem, pointing into the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `balancing.method: `ram` is not one of memory, cpu, disk, weighted`
    pub message: String,
}

/// The file cannot be used. Displays one `file:line:column: message` line per problem.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", at(&self.file, p.line, p.column))?;
            write!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn at(file: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_owned(),
    }
}

/// A usable configuration and what was odd about it.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: ProxlbConfig,
    /// `file:line:col: unknown key …`, world-readable secrets, settings we do not apply.
    pub warnings: Vec<String>,
    /// Where it came from (for messages).
    pub file: String,
    /// The dotted path of every key the file holds (`balancing.pools.web.type`), so the panel
    /// can tell a value the file sets from ProxLB's default.
    pub present: std::collections::BTreeSet<String>,
}

/// Reads and checks `path`. An unreadable file is an error naming the path and the OS reason.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            line: None,
            column: None,
            message: format!("cannot read the configuration: {e}"),
        }],
    })?;
    let mut loaded = parse_str(&text, &file)?;
    if loaded.config.holds_secret() && world_readable(path) {
        loaded.warnings.push(format!(
            "{file}: holds a password or token secret and is readable by every local user; \
             run `chmod 600 {file}` (or `chmod 640` with group root)"
        ));
    }
    Ok(loaded)
}

#[cfg(unix)]
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_: &Path) -> bool {
    false
}

/// Parses `text`; `file` only labels messages.
pub fn parse_str(text: &str, file: &str) -> Result<LoadedConfig, ConfigError> {
    let err = |problems| ConfigError { file: file.to_owned(), problems };
    // Before the parser: its work grows badly with nesting (100,000 levels took 75 s).
    if let Some(deep) = too_deep(text, MAX_NESTING) {
        return Err(err(vec![Problem {
            line: Some(deep.line),
            column: Some(deep.column),
            message: format!(
                "nesting deeper than {MAX_NESTING} levels (indentation, `- ` items and [ {{ brackets); \
                 a ProxLB configuration needs at most 5: check for unclosed brackets or runaway indentation"
            ),
        }]));
    }
    // An empty file is an empty mapping (all defaults), as for ProxLB's loader.
    let text_or_empty = if text.trim().is_empty() { "{}" } else { text };
    let value: serde_norway::Value =
        serde_norway::from_str(text_or_empty).map_err(|e| err(vec![from_yaml_error(&e)]))?;
    if !matches!(value, serde_norway::Value::Mapping(_)) {
        return Err(err(vec![Problem {
            line: Some(1),
            column: Some(1),
            message: "the configuration must be a mapping of sections (proxmox_api:, balancing:, …)".into(),
        }]));
    }
    let config: ProxlbConfig =
        serde_norway::from_str(text_or_empty).map_err(|e| err(vec![from_yaml_error(&e)]))?;
    let problems: Vec<Problem> = super::validate::check(&config)
        .into_iter()
        .map(|(path, message)| {
            let (line, column) = locate_path(text, &path);
            Problem { line, column, message: format!("{path}: {message}") }
        })
        .collect();
    if !problems.is_empty() {
        return Err(err(problems));
    }
    let mut warnings: Vec<String> = unknown_keys(&value, &ROOT)
        .into_iter()
        .map(|u| {
            let path: Vec<&str> = u.path.iter().map(String::as_str).collect();
            let (line, column) = locate(text, &path).map_or((None, None), |(l, _)| (Some(l), None));
            let hint = u.suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
            format!("{}: unknown key `{}` ignored{hint}", at(file, line, column), u.path.join("."))
        })
        .collect();
    let present = super::schema::key_paths(&value);
    for (path, message) in super::validate::not_applied(&config, &present) {
        let (line, column) = locate_path(text, &path);
        warnings.push(format!("{}: {path}: {message}", at(file, line, column)));
    }
    Ok(LoadedConfig { config, warnings, file: file.to_owned(), present })
}

/// The deepest nesting a configuration may have; ProxLB's deepest key is 4 levels down.
pub const MAX_NESTING: usize = 64;

/// Where the nesting first passes the limit (1-based line and column).
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

/// A cheap upper bound of the YAML nesting, line by line in one pass: the block indentation
/// levels open at the line (a stack of indents), the `- ` sequence items that open it, and the
/// flow brackets `[`/`{` open so far (outside quotes and comments). Over-counting is harmless
/// at a limit far above any real configuration; the point is to refuse a hostile file before
/// the parser spends minutes on it.
pub fn too_deep(text: &str, max: usize) -> Option<TooDeep> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if flow == 0 && !(rest.is_empty() || rest.starts_with('#')) {
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        let mut depth = indents.len() + flow;
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if prev == ' ' || prev == '\t' => break,
                (None, '"' | '\'') if matches!(prev, ' ' | '[' | '{' | ',' | ':' | '-') => quote = Some(c),
                (None, '[' | '{') => flow += 1,
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                // A `- ` item opens a level (`- - - x` nests three sequences on one line).
                (None, '-') if matches!(prev, ' ' | '-') && rest[col + 1..].starts_with([' ', '-']) => {
                    depth += 1
                }
                _ => {}
            }
            if quote.is_none() && (flow + indents.len() > max || depth > max) {
                return Some(TooDeep { line: n + 1, column: indent + col + 1 });
            }
            prev = c;
        }
        if flow + indents.len() > max || depth > max {
            return Some(TooDeep { line: n + 1, column: indent + 1 });
        }
    }
    None
}

fn locate_path(text: &str, dotted: &str) -> (Option<usize>, Option<usize>) {
    // `rebalancer.windows[1]` points at its list's key (the error message names the index).
    let path: Vec<&str> = dotted.split('.').map(|k| k.split_once('[').map_or(k, |(key, _)| key)).collect();
    locate(text, &path).map_or((None, None), |(l, c)| (Some(l), Some(c)))
}

/// serde_norway says "balancing.method: unknown variant `ram`, expected one of `memory`, `cpu`
/// at line 12 column 11"; we say where first and what is allowed in plain words.
fn from_yaml_error(e: &serde_norway::Error) -> Problem {
    let mut message = e.to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    message = reword(&message);
    let loc = e.location();
    Problem { line: loc.as_ref().map(|l| l.line()), column: loc.as_ref().map(|l| l.column()), message }
}

fn reword(message: &str) -> String {
    let (path, rest) = match message.split_once(": ") {
        Some((p, r)) if !p.contains(' ') => (format!("{p}: "), r),
        _ => (String::new(), message),
    };
    if let Some(r) = rest.strip_prefix("unknown variant ") {
        if let Some((got, allowed)) = r.split_once(", expected one of ") {
            let allowed = allowed.replace('`', "");
            return format!("{path}{got} is not one of {allowed}");
        }
        if let Some((got, allowed)) = r.split_once(", expected ") {
            // serde says "expected `a` or `b`" for two, "expected `a`" for one.
            let allowed = allowed.replace('`', "").replace(" or ", ", ");
            return format!("{path}{got} is not one of {allowed}");
        }
    }
    if let Some(r) = rest.strip_prefix("invalid type: ") {
        return format!("{path}wrong type: {r}");
    }
    format!("{path}{rest}")
}
