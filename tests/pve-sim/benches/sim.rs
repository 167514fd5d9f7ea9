//! Simulator benchmark: requests/second for `GET /api2/json/cluster/resources` at 3,000 guests and
//! resident memory at 0/10k/50k/100k guests.
//!
//! `cargo bench -p pve-sim --bench sim` starts the `pve-sim` binary (a second process) on loopback
//! with a generated cluster, then drives it with `wrk` when it is on PATH (else a small reqwest
//! client with a fixed request count), and reads `rss_bytes` (VmRSS of the simulator process) from
//! `GET /_sim/stats`. Everything is bounded: `PVE_SIM_BENCH_SECS` (default 10) per load run,
//! `PVE_SIM_BENCH_REQUESTS` (default 2000) for the fallback client, `PVE_SIM_BENCH_SIZES`
//! (default `0,10000,50000,100000`) for the memory runs. Prints results; asserts nothing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Sim {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn start(nodes: usize, guests: usize) -> Sim {
    let ca = std::env::temp_dir().join(format!("pve-sim-bench-ca-{}.pem", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pve-sim"))
        .args(["--generate", &format!("1,{nodes},{guests}"), "--ca-out"])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("PVE_SIM_LOG", std::env::var("PVE_SIM_LOG").unwrap_or_else(|_| "error".into()))
        .spawn()
        .expect("spawn pve-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let base = line.trim().strip_prefix("pve-sim listening on ").expect("ready line").to_string();
    let pem = std::fs::read(&ca).expect("CA");
    let _ = std::fs::remove_file(&ca);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    Sim { child, base, client }
}

async fn login(s: &Sim) -> String {
    let v: serde_json::Value = s
        .client
        .post(format!("{}/api2/json/access/ticket", s.base))
        .form(&[("username", "root@pam"), ("password", "demo")])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    v["data"]["ticket"].as_str().expect("ticket").to_string()
}

async fn rss(s: &Sim) -> u64 {
    let v: serde_json::Value = s
        .client
        .get(format!("{}/_sim/stats", s.base))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    v["rss_bytes"].as_u64().unwrap_or(0)
}

fn have_wrk() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

async fn bench_resources(guests: usize, secs: u64) {
    let nodes = 20;
    let s = start(nodes, guests);
    let ticket = login(&s).await;
    let url = format!("{}/api2/json/cluster/resources", s.base);
    let cookie = format!("PVEAuthCookie={ticket}");
    // one request to check it works and see the size of the answer
    let body = s.client.get(&url).header("Cookie", &cookie).send().await.expect("GET").bytes().await.unwrap();
    println!("GET /cluster/resources: {nodes} nodes, {guests} guests, {} bytes per answer", body.len());
    if have_wrk() {
        let cmd =
            ["-t2", "-c8", &format!("-d{secs}s"), "--latency", "-H", &format!("Cookie: {cookie}"), &url];
        println!("$ wrk -t2 -c8 -d{secs}s --latency -H 'Cookie: PVEAuthCookie=…' {url}");
        let out = Command::new("wrk").args(cmd).output().expect("wrk");
        println!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        let n = env_num("PVE_SIM_BENCH_REQUESTS", 2000) as usize;
        let conc = 8;
        println!("wrk not found; reqwest client, {n} requests, {conc} concurrent");
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..conc {
            let (c, url, cookie) = (s.client.clone(), url.clone(), cookie.clone());
            let count = n / conc + usize::from(i < n % conc);
            tasks.push(tokio::spawn(async move {
                for _ in 0..count {
                    let r = c.get(&url).header("Cookie", &cookie).send().await.expect("GET");
                    assert_eq!(r.status(), 200);
                    r.bytes().await.expect("body");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let el = t.elapsed().as_secs_f64();
        println!("{n} requests in {el:.2} s = {:.0} requests/s", n as f64 / el);
    }
    println!("simulator RSS after the run: {:.1} MiB", rss(&s).await as f64 / 1048576.0);
}

async fn bench_memory(sizes: &[usize]) {
    println!("guests  nodes  RSS (MiB)  per 10k guests (MiB, above the 0-guest baseline)");
    let mut base = None;
    for &g in sizes {
        let nodes = (g / 200).max(4);
        let s = start(nodes, g);
        // touch the full answer once so lazily built state is included
        let ticket = login(&s).await;
        let r = s
            .client
            .get(format!("{}/api2/json/cluster/resources?type=node", s.base))
            .header("Cookie", format!("PVEAuthCookie={ticket}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let b = rss(&s).await as f64 / 1048576.0;
        let b0 = *base.get_or_insert(b);
        let per = if g > 0 { format!("{:.1}", (b - b0) / (g as f64 / 10_000.0)) } else { "-".into() };
        println!("{g:>6}  {nodes:>5}  {b:>9.1}  {per}");
    }
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; only benchmark under `cargo bench`
    if !std::env::args().any(|a| a == "--bench") {
        println!("pve-sim bench: run with `cargo bench -p pve-sim --bench sim`");
        return;
    }
    let secs = env_num("PVE_SIM_BENCH_SECS", 10).clamp(1, 120);
    let sizes: Vec<usize> = std::env::var("PVE_SIM_BENCH_SIZES")
        .unwrap_or_else(|_| "0,10000,50000,100000".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .filter(|x| *x <= 200_000)
        .collect();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        bench_resources(3000, secs).await;
        bench_memory(&sizes).await;
    });
}
