//! RRD data (`rrddata`) generated from the current derived load plus deterministic noise.

use serde_json::{json, Map, Value};

use crate::api::{ApiError, Ctx};
use crate::scenario::GIB;
use crate::state::{hash2, unit, Cluster, Guest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeframe {
    Hour,
    Day,
    Week,
    Month,
    Year,
    Decade,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    Average,
    Max,
}

pub fn params(cx: &Ctx, is9: bool) -> Result<(Timeframe, Cf), ApiError> {
    let enum_list = if is9 { "hour, day, week, month, year, decade" } else { "hour, day, week, month, year" };
    let tf = match cx.params.str("timeframe").as_deref() {
        None => return Err(ApiError::param("timeframe", "property is missing and it is not optional")),
        Some("hour") => Timeframe::Hour,
        Some("day") => Timeframe::Day,
        Some("week") => Timeframe::Week,
        Some("month") => Timeframe::Month,
        Some("year") => Timeframe::Year,
        Some("decade") if is9 => Timeframe::Decade,
        Some(o) => {
            return Err(ApiError::param(
                "timeframe",
                format!("value '{o}' does not have a value in the enumeration '{enum_list}'"),
            ))
        }
    };
    let cf = match cx.params.str("cf").as_deref() {
        None | Some("AVERAGE") => Cf::Average,
        Some("MAX") => Cf::Max,
        Some(o) => {
            return Err(ApiError::param(
                "cf",
                format!("value '{o}' does not have a value in the enumeration 'AVERAGE, MAX'"),
            ))
        }
    };
    Ok((tf, cf))
}

/// (step seconds, rows)
fn resolution(tf: Timeframe, is9: bool) -> (i64, i64) {
    match (tf, is9) {
        (Timeframe::Hour, true) => (60, 60),
        (Timeframe::Day, true) => (60, 1440),
        (Timeframe::Week, true) => (1800, 336),
        (Timeframe::Month, true) => (1800, 1440),
        (Timeframe::Year, true) => (21600, 1440),
        (Timeframe::Decade, _) => (604_800, 570),
        (Timeframe::Hour, false) => (60, 70),
        (Timeframe::Day, false) => (1800, 70),
        (Timeframe::Week, false) => (10800, 70),
        (Timeframe::Month, false) => (43200, 70),
        (Timeframe::Year, false) => (604_800, 70),
    }
}

/// Multiplicative noise factor around 1.0 for a series at a time slot.
fn noise(seed: u64, series: u64, slot: i64, cf: Cf, amp: f64) -> f64 {
    let base = 1.0 + amp * (unit(seed ^ series, slot as u64) - 0.5) * 2.0;
    match cf {
        Cf::Average => base,
        Cf::Max => base + amp * 1.5 * unit(series, slot as u64 ^ 0xABCD),
    }
}

fn slots(tf: Timeframe, is9: bool, now: f64) -> impl Iterator<Item = i64> {
    let (step, rows) = resolution(tf, is9);
    let last = (now.floor() as i64 / step) * step;
    (0..rows).map(move |i| last - (rows - 1 - i) * step)
}

/// (cpu some, io some, io full, mem some, mem full) in percent.
pub type Pressure = (f64, f64, f64, f64, f64);

/// PSI pressure percentages (avg10) derived from node load.
pub fn pressure(c: &Cluster, node: &str) -> Pressure {
    let u = c.node_usage(node);
    let memr = if u.maxmem > 0 { u.mem as f64 / u.maxmem as f64 } else { 0.0 };
    let cpu_some = ((u.cpu - 0.6).max(0.0) * 60.0).min(100.0);
    let mem_some = ((memr - 0.85).max(0.0) * 200.0).min(100.0);
    let io_some = 0.2 + u.cpu * 2.0;
    (cpu_some, io_some, io_some * 0.5, mem_some, mem_some * 0.4)
}

fn round(x: f64) -> Value {
    json!((x * 1e6).round() / 1e6)
}

pub fn node_rows(c: &Cluster, node: &str, tf: Timeframe, cf: Cf, now: f64) -> Value {
    let is9 = c.version.is9();
    let u = c.node_usage(node);
    let series = hash2(0x4E0D, node.bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64)));
    let (ps, ios, iof, ms, mf) = pressure(c, node);
    let mut rows = Vec::new();
    let step = resolution(tf, is9).0 as f64;
    let online = c.nodes.get(node).is_some_and(|n| n.online);
    let past = c.past_placement();
    for t in slots(tf, is9, now) {
        let k = noise(c.seed, series, t, cf, 0.08);
        // with load dynamics the history follows the scenario's curves (current placement)
        let (base_cpu, base_mem) = match c.node_load_with(&past, node, t as f64, step, cf == Cf::Max) {
            Some((bc, bm)) if online => (bc, bm),
            _ => (u.cpu, u.mem as f64),
        };
        let cpu = (base_cpu * k).clamp(0.0, 1.0);
        let mem = (base_mem * noise(c.seed, series + 1, t, cf, 0.02)).min(u.maxmem as f64);
        let mut m = Map::new();
        m.insert("time".into(), t.into());
        m.insert("cpu".into(), round(cpu));
        m.insert("maxcpu".into(), u.maxcpu.into());
        m.insert("loadavg".into(), round(cpu * u.maxcpu as f64));
        m.insert("iowait".into(), round(0.002 * k));
        m.insert("memtotal".into(), round(u.maxmem as f64));
        m.insert("memused".into(), round(mem));
        m.insert("swaptotal".into(), round(8.0 * GIB));
        m.insert("swapused".into(), 0.into());
        m.insert("roottotal".into(), round(u.maxdisk as f64));
        m.insert("rootused".into(), round(u.disk as f64));
        m.insert("netin".into(), round(200_000.0 * k));
        m.insert("netout".into(), round(150_000.0 * k));
        if is9 {
            m.insert("memavailable".into(), round(u.maxmem as f64 - mem));
            m.insert("arcsize".into(), 0.into());
            m.insert("pressurecpusome".into(), round(ps * k));
            m.insert("pressureiosome".into(), round(ios * k));
            m.insert("pressureiofull".into(), round(iof * k));
            m.insert("pressurememorysome".into(), round(ms * k));
            m.insert("pressurememoryfull".into(), round(mf * k));
        }
        rows.push(Value::Object(m));
    }
    Value::Array(rows)
}

pub fn guest_rows(c: &Cluster, g: &Guest, tf: Timeframe, cf: Cf, now: f64) -> Value {
    let is9 = c.version.is9();
    let series = hash2(0x6E57, g.spec.vmid as u64);
    let (ps, ios, iof, ms, mf) = pressure(c, &g.node);
    let (ni, no, dr, dw) = crate::api::cluster::io_rates(c, g);
    let mut rows = Vec::new();
    let dynamic = c.dynamics.is_some() && g.running();
    let past = c.past_placement();
    for t in slots(tf, is9, now) {
        let k = noise(c.seed, series, t, cf, 0.15);
        let (gcpu, gmem) = if dynamic {
            let l = c.guest_load_at(&past, g, t as f64);
            (l.cpu, (g.base_mem_bytes() * l.mem_factor).min(g.maxmem() as f64))
        } else {
            (g.cpu(), g.mem() as f64)
        };
        let mut m = Map::new();
        m.insert("time".into(), t.into());
        m.insert("maxcpu".into(), g.vcpus().into());
        m.insert("cpu".into(), round((gcpu * k).clamp(0.0, 1.0)));
        m.insert("maxmem".into(), round(g.maxmem() as f64));
        let mem = (gmem * noise(c.seed, series + 1, t, cf, 0.03)).min(g.maxmem() as f64);
        m.insert("mem".into(), round(mem));
        m.insert("maxdisk".into(), round(g.maxdisk() as f64));
        m.insert("disk".into(), round(g.disk_used() as f64));
        m.insert("netin".into(), round(ni * k));
        m.insert("netout".into(), round(no * k));
        m.insert("diskread".into(), round(dr * k));
        m.insert("diskwrite".into(), round(dw * k));
        if is9 {
            let r = if g.running() { k } else { 0.0 };
            m.insert("memhost".into(), round(mem * 1.02));
            m.insert("pressurecpusome".into(), round(ps * r));
            m.insert("pressurecpufull".into(), round(ps * 0.5 * r));
            m.insert("pressureiosome".into(), round(ios * r));
            m.insert("pressureiofull".into(), round(iof * r));
            m.insert("pressurememorysome".into(), round(ms * r));
            m.insert("pressurememoryfull".into(), round(mf * r));
        }
        rows.push(Value::Object(m));
    }
    Value::Array(rows)
}
