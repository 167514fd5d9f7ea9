//! `rebalancer.notify`: where notifications go and when a threshold alert fires. Plain data and
//! its checks only; sending is `crate::notify`'s (which depends on this, never the reverse).

use super::Secret;
use serde::Deserialize;

/// Where messages go (`rebalancer.notify.targets[]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// POST of `{event, title, message, at, job_id?, node?}`.
    Json,
    /// Gotify: POST `URL/message` with `X-Gotify-Key: token`.
    Gotify,
    /// ntfy: POST of the text to the topic URL, `Title` header, bearer token if set.
    Ntfy,
    /// Telegram: POST `URL/bot<token>/sendMessage` `{chat_id, text}` (URL default
    /// `https://api.telegram.org`).
    Telegram,
    /// Slack and compatible incoming webhooks (Mattermost, Rocket.Chat, Discord's `/slack`):
    /// POST `{text}`.
    Slack,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Gotify => "gotify",
            Kind::Ntfy => "ntfy",
            Kind::Telegram => "telegram",
            Kind::Slack => "slack",
        }
    }
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token: Option<Secret>,
    /// Telegram's chat.
    #[serde(default)]
    pub chat_id: Option<String>,
}

impl std::fmt::Debug for Target {
    // The URL may hold a secret too (Telegram's bot token, a webhook's path): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Target {
    /// What is wrong with this target, for the configuration check.
    pub fn problem(&self) -> Option<String> {
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        match (&self.kind, &self.url) {
            (Kind::Telegram, _) if self.token.is_none() || self.chat_id.is_none() => {
                Some("telegram needs `token` (the bot token) and `chat_id`".into())
            }
            (Kind::Telegram, None) => None,
            (_, None) => Some("needs `url` (http:// or https://)".into()),
            (_, Some(u)) if !url_ok(u) => Some("`url` must start with http:// or https://".into()),
            _ => None,
        }
    }
}

/// "Node above X % for Y minutes" (`rebalancer.notify.alert`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Alert {
    /// Usage percent (0–100) that counts as high.
    pub percent: f64,
    /// For this many minutes in a row before one alert is sent (re-armed when it drops below).
    pub minutes: f64,
    /// `memory` or `cpu`.
    pub resource: String,
    /// Seconds between the collections the alert is evaluated on.
    pub check_interval_secs: u64,
}

impl Default for Alert {
    fn default() -> Self {
        Alert { percent: 90.0, minutes: 10.0, resource: "memory".into(), check_interval_secs: 60 }
    }
}

/// `rebalancer.notify`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub targets: Vec<Target>,
    /// Threshold alerts; off when absent.
    pub alert: Option<Alert>,
    /// Seconds one message may take (default 5).
    pub timeout_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_are_named() {
        let parse = |y: &str| serde_norway::from_str::<NotifyConfig>(y);
        let c =
            parse("targets: [{kind: ntfy, url: 'https://ntfy.sh/t'}, {kind: telegram, token: x}]").unwrap();
        assert_eq!(c.targets[0].problem(), None);
        assert!(c.targets[1].problem().unwrap().contains("chat_id"));
        let c = parse("targets: [{kind: slack, url: 'ftp://x'}, {kind: gotify}]").unwrap();
        assert!(c.targets[0].problem().unwrap().contains("http://"));
        assert!(c.targets[1].problem().unwrap().contains("needs `url`"));
        assert!(parse("targets: [{kind: email, url: 'http://x'}]").is_err(), "unknown kind");
        assert!(parse("targets: [{kind: json, uri: 'http://x'}]").is_err(), "unknown key");
    }
}
