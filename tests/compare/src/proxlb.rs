//! Running the real ProxLB 2.3 (from the project venv) against a simulator, with a timeout.
//!
//! ProxLB is run, never copied. It sleeps 0.1 s before every tags, RRD and version call (about
//! 0.3 s per guest), which alone would take ~15 min on 3,000 guests. The launcher below starts
//! the unmodified `proxlb` module through `runpy` and, when asked, replaces only sleeps shorter
//! than one second by a counter, so the report can give both the measured time and the time as
//! shipped (measured + skipped sleeps).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Python run with `-c`: counts (and optionally skips) ProxLB's sub-second sleeps, optionally
/// shortens its long sleeps (`PLB_CAP_LONG_SLEEPS`, seconds: the 5 s between task-status sweeps,
/// for the simulated week, where the simulator's clock runs faster than the wall clock), then
/// runs the `proxlb` package as `python -m proxlb` would.
pub const LAUNCHER: &str = "import atexit,os,runpy,sys,time
_s=time.sleep;_n=[0.0];_skip=os.environ.get('PLB_SKIP_SLEEPS')=='1';_cap=float(os.environ.get('PLB_CAP_LONG_SLEEPS','0'))
def _sleep(t):
    if t<1: _n[0]+=t
    if _cap>0 and t>=1: return _s(_cap)
    if not(_skip and t<1): _s(t)
time.sleep=_sleep
atexit.register(lambda: sys.stderr.write('PLB_SLEPT_S=%.2f\\n'%_n[0]))
runpy.run_module('proxlb',run_name='__main__',alter_sys=True)";

/// Where the venv python is: `$PROXLB_PYTHON`, else `<workspace>/target/venv/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PROXLB_PYTHON") {
        return PathBuf::from(p);
    }
    crate::workspace_root().join("target/venv/bin/python")
}

/// The configuration both tools are compared under: memory, used, balanciness 5.
pub fn config(port: u16, cluster_yaml: &str, dry_run_parallel: bool) -> String {
    let parallel = if dry_run_parallel { "  parallel: True\n  parallel_jobs: 4\n" } else { "" };
    let cluster =
        if cluster_yaml.is_empty() { String::new() } else { format!("proxmox_cluster:\n{cluster_yaml}") };
    format!(
        "proxmox_api:\n  hosts: ['127.0.0.1:{port}']\n  user: root@pam\n  pass: demo\n  ssl_verification: False\n  timeout: 30\n\
{cluster}balancing:\n  enable: True\n  balance_types: ['vm', 'ct']\n  balanciness: 5\n  method: memory\n  mode: used\n{parallel}\
service:\n  daemon: False\n  log_level: CRITICAL\n"
    )
}

/// One ProxLB run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Finished with exit code 0 and printed its JSON.
    pub ok: bool,
    pub exit: Option<i32>,
    pub wall: Duration,
    /// `(vmid, from, to)` for every planned move (ignored guests excluded), sorted by vmid.
    pub moves: Vec<(u32, String, String)>,
    /// Why it failed (timeout, exit code, last lines of output).
    pub error: Option<String>,
    /// Seconds ProxLB asked to sleep in sub-second sleeps (skipped or not).
    pub sleeps_s: f64,
    pub skipped_sleeps: bool,
    /// CRITICAL lines ProxLB logged.
    pub critical: Vec<String>,
}

impl Run {
    /// Wall time as shipped: measured, plus the sleeps that were skipped.
    pub fn as_shipped(&self) -> Duration {
        if self.skipped_sleeps {
            self.wall + Duration::from_secs_f64(self.sleeps_s)
        } else {
            self.wall
        }
    }
}

/// Runs ProxLB with `cfg`, `-j` and `-d` when `dry_run`; kills it after `timeout`.
pub async fn run(cfg: &str, dry_run: bool, skip_sleeps: bool, timeout: Duration) -> Run {
    run_capped(cfg, dry_run, skip_sleeps, None, timeout).await
}

/// [`run`], with ProxLB's sleeps of one second or more replaced by `cap` seconds when given.
pub async fn run_capped(
    cfg: &str,
    dry_run: bool,
    skip_sleeps: bool,
    cap: Option<f64>,
    timeout: Duration,
) -> Run {
    let dir = crate::temp_dir("proxlb");
    let cfg_path = dir.join("proxlb.yaml");
    if let Err(e) = std::fs::write(&cfg_path, cfg) {
        return Run { error: Some(format!("writing config: {e}")), ..Default::default() };
    }
    let mut r = run_in(&python(), &cfg_path, dry_run, skip_sleeps, cap, timeout).await;
    r.skipped_sleeps = skip_sleeps;
    let _ = std::fs::remove_dir_all(&dir);
    r
}

async fn run_in(
    py: &Path,
    cfg_path: &Path,
    dry_run: bool,
    skip: bool,
    cap: Option<f64>,
    timeout: Duration,
) -> Run {
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg("-c").arg(LAUNCHER).arg("-c").arg(cfg_path).arg("-j");
    if dry_run {
        cmd.arg("-d");
    }
    cmd.env("PLB_SKIP_SLEEPS", if skip { "1" } else { "0" })
        .env("PLB_CAP_LONG_SLEEPS", cap.map_or("0".into(), |c| c.to_string()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let start = Instant::now();
    let child = match cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            return Run { error: Some(format!("cannot start {}: {e}", py.display())), ..Default::default() }
        }
    };
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Run { error: Some(format!("waiting for ProxLB: {e}")), ..Default::default() },
        // Dropping the future drops the child: kill_on_drop kills it.
        Err(_) => {
            return Run {
                wall: start.elapsed(),
                error: Some(format!("timed out after {} s (killed)", timeout.as_secs())),
                ..Default::default()
            }
        }
    };
    let wall = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let sleeps_s = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PLB_SLEPT_S="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let critical: Vec<String> =
        stdout.lines().filter(|l| l.contains(" - CRITICAL - ")).map(|l| l.to_string()).collect();
    let json = parse_json(&stdout);
    let exit = out.status.code();
    let mut r = Run { exit, wall, sleeps_s, critical, ..Default::default() };
    match (exit, json) {
        (Some(0), Some(j)) => match moves(&j) {
            Ok(m) => {
                r.ok = true;
                r.moves = m;
            }
            Err(e) => r.error = Some(format!("unexpected JSON: {e}")),
        },
        (code, _) => {
            let tail: Vec<&str> =
                stdout.lines().chain(stderr.lines()).filter(|l| !l.starts_with("PLB_SLEPT_S=")).collect();
            let tail = tail[tail.len().saturating_sub(3)..]
                .iter()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(" / ");
            r.error = Some(format!("exit {}: {}", code.map_or("signal".into(), |c| c.to_string()), tail));
        }
    }
    r
}

/// The pretty-printed JSON: from the first line `{` to the last line `}`.
pub fn parse_json(stdout: &str) -> Option<Value> {
    let lines: Vec<&str> = stdout.lines().collect();
    match (lines.iter().position(|l| *l == "{"), lines.iter().rposition(|l| *l == "}")) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&lines[a..=b].join("\n")).ok(),
        _ => None,
    }
}

/// ProxLB's plan: guests whose target differs from their node, ignored ones excluded.
pub fn moves(j: &Value) -> Result<Vec<(u32, String, String)>, String> {
    let guests = j["guests"].as_object().ok_or("no guests object")?;
    let mut v = Vec::new();
    for g in guests.values() {
        if g["node_current"] == g["node_target"] || g["ignore"] == true {
            continue;
        }
        let id = g["id"].as_u64().ok_or("guest without id")? as u32;
        let from = g["node_current"].as_str().ok_or("no node_current")?.to_string();
        let to = g["node_target"].as_str().ok_or("no node_target")?.to_string();
        v.push((id, from, to));
    }
    v.sort();
    Ok(v)
}

/// `python --version` and ProxLB's version line.
pub async fn versions() -> (String, String) {
    let py = python();
    let pyv = tokio::process::Command::new(&py).arg("--version").output().await;
    let plb = tokio::process::Command::new(&py).args(["-m", "proxlb", "-v"]).output().await;
    let first = |o: std::io::Result<std::process::Output>| match o {
        Ok(o) => {
            let s = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        }
        Err(e) => format!("unavailable ({e})"),
    };
    (first(pyv), first(plb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_read_from_pretty_json_between_log_lines() {
        let out = "x - ProxLB - INFO - Using config path: c\n{\n    \"guests\": {\n        \"a\": {\"id\": 101, \"node_current\": \"pve1\", \"node_target\": \"pve2\", \"ignore\": false},\n        \"b\": {\"id\": 102, \"node_current\": \"pve1\", \"node_target\": \"pve3\", \"ignore\": true},\n        \"c\": {\"id\": 100, \"node_current\": \"pve1\", \"node_target\": \"pve1\", \"ignore\": false}\n    }\n}\nDaemon mode not active - stopping.\n";
        let j = parse_json(out).unwrap();
        assert_eq!(moves(&j).unwrap(), vec![(101, "pve1".into(), "pve2".into())]);
    }

    #[test]
    fn config_carries_the_shared_settings() {
        let c = config(8006, "  maintenance_nodes: ['pve2']\n", false);
        assert!(c.contains("balanciness: 5") && c.contains("method: memory") && c.contains("mode: used"));
        assert!(c.contains("proxmox_cluster:\n  maintenance_nodes: ['pve2']"));
    }
}
