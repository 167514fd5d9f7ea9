//! A small WebDriver (W3C) client over reqwest, driving Debian's `chromedriver` with
//! `/usr/bin/chromium` headless. Just what the tests need: navigate, find, text, click, script,
//! screenshot, and bounded waiting.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh profile.
    pub async fn start(width: u32, height: u32, dark: bool) -> Result<Browser> {
        for bin in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: run `cargo xtask setup` (installs Debian's chromium and chromium-driver)");
            }
        }
        let port = free_port()?;
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::Builder::new().prefix("pvrb-chromium-").tempdir()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // Without these Chromium keeps calling out to a network this machine does not have.
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if dark {
            args.push("--force-dark-mode".into());
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        // chromedriver needs a moment to listen: retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            match http.post(format!("{base}/session")).json(&caps).send().await {
                Ok(r) => break r.json::<Value>().await?,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => bail!("chromedriver did not answer on {base}: {e}"),
            }
        };
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no WebDriver session: {answer}"))?
            .to_owned();
        Ok(Browser { http, session: format!("{base}/session/{session}"), driver, _profile: profile })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await?.json().await?;
        if let Some(err) = v["value"].get("error") {
            bail!("WebDriver {path}: {err}: {}", v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await.map(drop)
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    async fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let v = self
            .cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await?;
        let Some(list) = v.as_array() else { bail!("WebDriver /elements answered {v}") };
        list.iter()
            .map(|e| e[ELEMENT_KEY].as_str().map(str::to_owned).ok_or_else(|| anyhow!("not an element: {e}")))
            .collect()
    }

    pub async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.find_all(css).await?.len())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        let el = self.find_all(css).await?.into_iter().next().ok_or_else(|| anyhow!("no element `{css}`"))?;
        let v = self.cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find_all(css).await?.into_iter().next().ok_or_else(|| anyhow!("no element `{css}`"))?;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await.map(drop)
    }

    /// Types `text` into the element (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find_all(css).await?.into_iter().next().ok_or_else(|| anyhow!("no element `{css}`"))?;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/clear"), Some(json!({}))).await?;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({"text": text})))
            .await
            .map(drop)
    }

    /// Waits until at least `n` elements match `css`, at most `timeout`.
    pub async fn wait_for(&self, css: &str, n: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.count(css).await?;
            if found >= n {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                let body = self.eval("return document.body.innerText").await.unwrap_or_default();
                bail!("waited {timeout:?} for {n}× `{css}`, found {found}; page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Waits until `script` (a function body) returns a truthy value, at most `timeout`; returns
    /// that value.
    pub async fn wait_until(&self, script: &str, what: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script).await?;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                let body = self.eval("return document.body.innerText").await.unwrap_or_default();
                bail!("waited {timeout:?} for {what}; page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the first element matching `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String> {
        let script = format!(
            "const e = document.querySelector({}); return e && e.innerText.includes({}) ? e.innerText : null;",
            json!(css),
            json!(needle)
        );
        let v = self.wait_until(&script, &format!("`{css}` to contain {needle:?}"), timeout).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute of the first element matching `css` (`None` if absent).
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        let script = format!(
            "const e = document.querySelector({}); if (!e) throw new Error('no element ' + {0}); return e.getAttribute({});",
            json!(css),
            json!(name)
        );
        Ok(self.eval(&script).await?.as_str().map(str::to_owned))
    }

    /// Picks `value` in a `<select>` and fires `change`, as a user would.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        let script = format!(
            "const e = document.querySelector({}); if (!e) throw new Error('no element ' + {0}); e.value = {}; e.dispatchEvent(new Event('change', {{bubbles: true}})); return e.value;",
            json!(css),
            json!(value)
        );
        let v = self.eval(&script).await?;
        if v.as_str() != Some(value) {
            bail!("`{css}` has no option {value:?}");
        }
        Ok(())
    }
}
