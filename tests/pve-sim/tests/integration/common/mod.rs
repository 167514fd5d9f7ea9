#![allow(dead_code)]
//! Shared helpers for the integration tests: start a simulator, a reqwest client trusting its CA.

use pve_sim::{RunningSim, Scenario, SimConfig};
use serde_json::Value;

pub async fn start_demo(time_scale: f64) -> RunningSim {
    let sc = Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    start_with(sc, time_scale).await
}

pub async fn start_with(scenario: Scenario, time_scale: f64) -> RunningSim {
    let mut cfg = SimConfig::new(scenario);
    cfg.time_scale = time_scale;
    pve_sim::start(cfg).await.expect("simulator starts")
}

pub fn client(sim: &RunningSim) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        // A bound against a hung server, not a speed check (the 100 × 20,000 cluster's
        // validated /cluster/resources takes seconds in a debug build on a busy machine).
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("client")
}

pub fn url(sim: &RunningSim, path: &str) -> String {
    format!("{}/api2/json{}", sim.base_url, path)
}

/// Logs in; returns (ticket, csrf).
pub async fn login(c: &reqwest::Client, sim: &RunningSim, user: &str, pass: &str) -> (String, String) {
    let r = c
        .post(url(sim, "/access/ticket"))
        .form(&[("username", user), ("password", pass)])
        .send()
        .await
        .expect("login request");
    assert_eq!(r.status(), 200, "login as {user}");
    let v: Value = r.json().await.expect("json");
    (
        v["data"]["ticket"].as_str().expect("ticket").to_string(),
        v["data"]["CSRFPreventionToken"].as_str().expect("csrf").to_string(),
    )
}

/// A logged-in session as root@pam.
pub struct Session {
    pub c: reqwest::Client,
    pub base: String,
    pub ticket: String,
    pub csrf: String,
}

impl Session {
    pub async fn root(sim: &RunningSim) -> Session {
        let c = client(sim);
        let (ticket, csrf) = login(&c, sim, "root@pam", "demo").await;
        Session { c, base: format!("{}/api2/json", sim.base_url), ticket, csrf }
    }
    fn cookie(&self) -> String {
        format!("PVEAuthCookie={}", self.ticket)
    }
    /// GET; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .send()
            .await
            .expect("GET");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn data(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v["data"].clone()
    }
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .header("CSRFPreventionToken", &self.csrf)
            .form(form)
            .send()
            .await
            .expect("POST");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .c
            .delete(format!("{}{path}", self.base))
            .header("Cookie", self.cookie())
            .header("CSRFPreventionToken", &self.csrf)
            .send()
            .await
            .expect("DELETE");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    /// Polls a task until it stops (bounded); returns the final status object.
    pub async fn wait_task(&self, node: &str, upid: &str) -> Value {
        let enc = upid.replace(':', "%3A");
        for _ in 0..400 {
            let st = self.data(&format!("/nodes/{node}/tasks/{enc}/status")).await;
            if st["status"] == "stopped" {
                return st;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("task {upid} did not finish within the bounded wait");
    }
}
