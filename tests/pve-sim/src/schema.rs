//! Request and response validation against PVE's API schema (the API viewer's `apidata.json`).
//!
//! The schema travels with the crate: `schema/pve-{7.4,8.4,9.0,9.1}.json`, the endpoints the
//! simulator serves and the backend calls (see `schema/README.md`), compiled into the binary.
//! `PVE_APIDATA` names a full `apidata.json` to use instead for 9.1 (siblings
//! `apidata-pve{7.4,8.4,9.0}.json` beside it for the other versions); a file named there that
//! cannot be read is an error, never a silent fallback.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use serde_json::Value;

use crate::api::{ApiError, Params};
use crate::state::PveVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Var(String),
}

/// One API path with its per-method definitions (`info`).
#[derive(Debug)]
struct Endpoint {
    template: String,
    segs: Vec<Seg>,
    info: serde_json::Map<String, Value>,
}

/// A parsed apidata tree.
#[derive(Debug)]
pub struct Schema {
    /// Where it was loaded from: a file, or `bundled pve-9.1.json`.
    pub source: String,
    endpoints: Vec<Endpoint>,
}

/// A resolved endpoint for a concrete request path.
pub struct Match<'a> {
    pub template: &'a str,
    /// Path variables, e.g. `node → pve1`.
    pub vars: BTreeMap<String, String>,
    info: &'a serde_json::Map<String, Value>,
}

impl Match<'_> {
    /// The definition of `method` (`GET`, `POST`, …) for this path, if any.
    pub fn method(&self, method: &str) -> Option<&Value> {
        self.info.get(method)
    }
    pub fn methods(&self) -> Vec<String> {
        self.info.keys().cloned().collect()
    }
}

fn collect(nodes: &[Value], out: &mut Vec<Endpoint>) {
    for n in nodes {
        if let Some(path) = n.get("path").and_then(Value::as_str) {
            let segs = path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
                    Some(v) => Seg::Var(v.to_string()),
                    None => Seg::Lit(s.to_string()),
                })
                .collect();
            let info = n.get("info").and_then(Value::as_object).cloned().unwrap_or_default();
            out.push(Endpoint { template: path.to_string(), segs, info });
        }
        if let Some(ch) = n.get("children").and_then(Value::as_array) {
            collect(ch, out);
        }
    }
}

impl Schema {
    pub fn load(p: &Path) -> anyhow::Result<Schema> {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        Schema::parse(&text, p.display().to_string())
    }

    /// Parses an apidata tree (or the flat `[{path, info}]` list of the bundled files).
    pub fn parse(text: &str, source: String) -> anyhow::Result<Schema> {
        let v: Value = serde_json::from_str(text).with_context(|| format!("parsing {source}"))?;
        let arr = v.as_array().with_context(|| format!("{source}: an API schema must be a JSON array"))?;
        let mut endpoints = Vec::new();
        collect(arr, &mut endpoints);
        anyhow::ensure!(!endpoints.is_empty(), "{source}: no endpoints in the API schema");
        Ok(Schema { source, endpoints })
    }

    /// All endpoint templates with their methods.
    pub fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        self.endpoints.iter().map(|e| (e.template.clone(), e.info.keys().cloned().collect())).collect()
    }

    /// Finds the endpoint for concrete path segments (literal segments win over variables).
    pub fn find(&self, segs: &[String]) -> Option<Match<'_>> {
        let mut best: Option<(usize, &Endpoint)> = None;
        for e in self.endpoints.iter().filter(|e| e.segs.len() == segs.len()) {
            let mut lits = 0;
            let ok = e.segs.iter().zip(segs).all(|(t, s)| match t {
                Seg::Lit(l) => {
                    lits += 1;
                    l == s
                }
                Seg::Var(_) => true,
            });
            if ok && best.is_none_or(|(b, _)| lits > b) {
                best = Some((lits, e));
            }
        }
        let (_, e) = best?;
        let vars = e
            .segs
            .iter()
            .zip(segs)
            .filter_map(|(t, s)| match t {
                Seg::Var(v) => Some((v.clone(), s.clone())),
                Seg::Lit(_) => None,
            })
            .collect();
        Some(Match { template: &e.template, vars, info: &e.info })
    }

    /// Validates request parameters (query/body plus path variables) like PVE's JSONSchema does.
    /// Unknown paths/methods pass (the dispatcher answers 501).
    pub fn validate_request(
        &self,
        method: &str,
        segs: &[String],
        params: &Params,
        _v: &PveVersion,
    ) -> Result<(), ApiError> {
        let Some(m) = self.find(segs) else { return Ok(()) };
        let Some(def) = m.method(method) else { return Ok(()) };
        let pschema = def.get("parameters").cloned().unwrap_or(Value::Null);
        let props = pschema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let additional = pschema.get("additionalProperties").map(truthy).unwrap_or(true);
        let mut errors = BTreeMap::new();
        for (k, v) in &params.0 {
            if k == "_dc" {
                continue;
            }
            let prop = props.get(k).or_else(|| array_prop(&props, k));
            match prop {
                None if !additional => {
                    errors.insert(
                        k.clone(),
                        "property is not defined in schema and the schema does not allow additional properties".into(),
                    );
                }
                None => {}
                Some(p) => {
                    if let Err(e) = check_param(p, v) {
                        errors.insert(k.clone(), e);
                    }
                }
            }
        }
        for (k, v) in &m.vars {
            if let Some(p) = props.get(k) {
                if let Err(e) = check_param(p, &Value::String(v.clone())) {
                    errors.insert(k.clone(), e);
                }
            }
        }
        for (k, p) in &props {
            let optional = p.get("optional").map(truthy).unwrap_or(false);
            if !optional && !params.0.contains_key(k) && !m.vars.contains_key(k) {
                errors.insert(k.clone(), "property is missing and it is not optional".into());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::params(errors))
        }
    }

    /// Validates a response `data` value against the endpoint's `returns` schema.
    pub fn validate_response(&self, method: &str, segs: &[String], data: &Value) -> Result<(), Vec<String>> {
        let m = self.find(segs).ok_or_else(|| vec![format!("no schema for /{}", segs.join("/"))])?;
        let def = m.method(method).ok_or_else(|| vec![format!("no {method} for {}", m.template)])?;
        let mut errs = Vec::new();
        if let Some(r) = def.get("returns") {
            validate_value(r, data, "data", &mut errs);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// `hostpci3` matches a `hostpci[n]` property.
fn array_prop<'a>(props: &'a serde_json::Map<String, Value>, k: &str) -> Option<&'a Value> {
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == k.len() {
        return None;
    }
    props.get(&format!("{base}[n]"))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
        Value::String(s) => s == "1" || s == "true",
        _ => false,
    }
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        other => other.to_string(),
    }
}

/// PVE's `check_type` plus enum/min/max/maxLength for one request parameter.
fn check_param(p: &Value, v: &Value) -> Result<(), String> {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
    let text = as_text(v);
    match ty {
        "boolean" => match v {
            Value::Bool(_) => {}
            _ if text == "0" || text == "1" => {}
            _ => return Err(format!("type check ('boolean') failed - got '{text}'")),
        },
        "integer" => {
            let ok = text.strip_prefix('-').unwrap_or(&text);
            if ok.is_empty() || !ok.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("type check ('integer') failed - got '{text}'"));
            }
            range(p, text.parse::<f64>().unwrap_or(0.0))?;
        }
        "number" => {
            let x: f64 = text.parse().map_err(|_| format!("type check ('number') failed - got '{text}'"))?;
            range(p, x)?;
        }
        "string" => {
            if let Some(en) = p.get("enum").and_then(Value::as_array) {
                if !en.iter().any(|e| e.as_str() == Some(text.as_str())) {
                    let list: Vec<String> = en.iter().map(as_text).collect();
                    return Err(format!(
                        "value '{text}' does not have a value in the enumeration '{}'",
                        list.join(", ")
                    ));
                }
            }
            if let Some(max) = num(p.get("maxLength")) {
                if text.chars().count() as f64 > max {
                    return Err(format!("value may only be {max} characters long"));
                }
            }
            if let Some(min) = num(p.get("minLength")) {
                if (text.chars().count() as f64) < min {
                    return Err(format!("value must be at least {min} characters long"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn range(p: &Value, x: f64) -> Result<(), String> {
    if let Some(min) = num(p.get("minimum")) {
        if x < min {
            return Err(format!("value must have a minimum value of {min}"));
        }
    }
    if let Some(max) = num(p.get("maximum")) {
        if x > max {
            return Err(format!("value may not exceed {max}"));
        }
    }
    Ok(())
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean() || v.as_i64().is_some_and(|i| i == 0 || i == 1),
        _ => true,
    }
}

/// Validates a value against a (response) schema; errors are pushed with their JSON location.
pub fn validate_value(s: &Value, v: &Value, loc: &str, errs: &mut Vec<String>) {
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    if v.is_null() && s.get("optional").map(truthy).unwrap_or(false) {
        return;
    }
    let Some(ty) = types.iter().copied().find(|t| type_ok(t, v)) else {
        errs.push(format!("{loc}: expected {}, got {}", types.join("|"), short(v)));
        return;
    };
    match ty {
        "object" => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let obj = v.as_object().expect("object");
                for (k, ps) in props {
                    match obj.get(k) {
                        Some(x) => validate_value(ps, x, &format!("{loc}.{k}"), errs),
                        None => {
                            if !ps.get("optional").map(truthy).unwrap_or(false) {
                                errs.push(format!("{loc}.{k}: required property missing"));
                            }
                        }
                    }
                }
            }
        }
        "array" => {
            if let Some(items) = s.get("items") {
                for (i, x) in v.as_array().expect("array").iter().enumerate() {
                    validate_value(items, x, &format!("{loc}[{i}]"), errs);
                }
            }
        }
        "string" => {
            if let Some(en) = s.get("enum").and_then(Value::as_array) {
                if !en.iter().any(|e| e == v) {
                    errs.push(format!("{loc}: {} not in enum {}", short(v), Value::Array(en.clone())));
                }
            }
        }
        "integer" | "number" => {
            let x = v.as_f64().unwrap_or(0.0);
            if let Some(min) = num(s.get("minimum")) {
                if x < min {
                    errs.push(format!("{loc}: {x} below minimum {min}"));
                }
            }
            if let Some(max) = num(s.get("maximum")) {
                if x > max {
                    errs.push(format!("{loc}: {x} above maximum {max}"));
                }
            }
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..60])
    } else {
        s
    }
}

/// The bundled schema files, by the version they were taken from.
const BUNDLED: [(&str, &str); 4] = [
    ("7.4", include_str!("../schema/pve-7.4.json")),
    ("8.4", include_str!("../schema/pve-8.4.json")),
    ("9.0", include_str!("../schema/pve-9.0.json")),
    ("9.1", include_str!("../schema/pve-9.1.json")),
];

/// The schema release a simulated version is checked against: the newest bundled one of its line.
pub fn schema_release(v: &PveVersion) -> &'static str {
    match (v.major, v.minor) {
        (7, _) => "7.4",
        (8, _) => "8.4",
        (9, 0) => "9.0",
        _ => "9.1",
    }
}

/// Where a version's schema comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaSource {
    Bundled(&'static str),
    File(PathBuf),
}

/// The bundled file for a version, or with `$PVE_APIDATA` set, that file (9.1) or its
/// `apidata-pve<release>.json` sibling when one exists.
pub fn source_for(v: &PveVersion) -> SchemaSource {
    let release = schema_release(v);
    let Some(base) = std::env::var_os("PVE_APIDATA").map(PathBuf::from) else {
        return SchemaSource::Bundled(release);
    };
    let sibling = base.with_file_name(format!("apidata-pve{release}.json"));
    if release != "9.1" && sibling.exists() {
        return SchemaSource::File(sibling);
    }
    SchemaSource::File(base)
}

fn load_source(src: &SchemaSource) -> anyhow::Result<Schema> {
    match src {
        SchemaSource::Bundled(release) => {
            let (_, text) = BUNDLED.iter().find(|(r, _)| r == release).context("no bundled schema")?;
            Schema::parse(text, format!("bundled pve-{release}.json"))
        }
        SchemaSource::File(p) => Schema::load(p).with_context(|| {
            format!("PVE_APIDATA={}: set it to a readable apidata.json or unset it", p.display())
        }),
    }
}

/// Loads (once per process and source) the schema for a version.
pub fn for_version(v: &PveVersion) -> anyhow::Result<Arc<Schema>> {
    static CACHE: OnceLock<Mutex<HashMap<SchemaSource, Arc<Schema>>>> = OnceLock::new();
    let src = source_for(v);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = c.get(&src) {
        return Ok(s.clone());
    }
    let s = Arc::new(load_source(&src)?);
    c.insert(src, s.clone());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_release_parses_and_has_the_migrate_endpoint() {
        for (release, _) in BUNDLED {
            let s = load_source(&SchemaSource::Bundled(release)).expect(release);
            let segs: Vec<String> = ["nodes", "pve1", "qemu", "100", "migrate"].map(String::from).to_vec();
            let m = s.find(&segs).unwrap_or_else(|| panic!("{release}: no migrate endpoint"));
            assert!(m.method("POST").is_some(), "{release}");
        }
    }

    #[test]
    fn versions_map_to_their_release() {
        for (v, r) in
            [("7.4-17", "7.4"), ("8.2.4", "8.4"), ("9.0.11", "9.0"), ("9.1.2", "9.1"), ("9.2.0", "9.1")]
        {
            assert_eq!(schema_release(&PveVersion::parse(v).unwrap()), r, "{v}");
        }
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error_naming_it() {
        let err = load_source(&SchemaSource::File(PathBuf::from("/nonexistent/apidata.json"))).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("PVE_APIDATA=/nonexistent/apidata.json"), "{msg}");
    }
}
