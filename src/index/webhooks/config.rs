//! `[index.webhooks]`: whether the index sends webhooks at all, how it connects (proxy,
//! CA roots, timeout, whether plain http is allowed), how it retries, and the global hooks
//! every push is announced to (`[[index.webhooks.global]]`). Validated when the config is
//! loaded, so a mistake stops startup with the key named instead of failing per delivery.

use std::collections::HashSet;
use std::path::PathBuf;

use reqwest::Url;
use serde::Deserialize;

use crate::index::store::WebhookEvent;

/// Request timeout when `timeout_secs` is not given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Attempts before a delivery is given up (`failed`) when `max_attempts` is not given.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// First retry delay when `retry_base_secs` is not given; it doubles per failed attempt.
pub const DEFAULT_RETRY_BASE_SECS: u64 = 5;
/// Longest retry delay when `retry_max_secs` is not given.
pub const DEFAULT_RETRY_MAX_SECS: u64 = 3600;
/// Longest hook URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Shortest hook secret accepted: a short secret is guessable from signed payloads.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest hook secret accepted.
pub const MAX_SECRET_LEN: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Off by default: no hook is stored, no delivery queued, no request ever sent, and the
    /// webhook API answers that webhooks are disabled.
    pub enabled: bool,
    /// Outbound HTTP(S) proxy for webhook requests, e.g. `http://proxy:3128`. None: direct;
    /// the `HTTP(S)_PROXY` environment variables are never consulted.
    pub proxy: Option<String>,
    /// Seconds one delivery attempt (connect, send, answer) may take; default 10.
    pub timeout_secs: u64,
    /// PEM bundle of extra CA roots trusted for receivers' certificates, besides the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` hook URLs (payloads and signatures in clear text). Default false:
    /// hooks must be `https://`.
    pub allow_http: bool,
    /// Hosts hook URLs may point at: exact names or addresses, or `*.example.org` for any
    /// name under it. Empty (the default): any host the appliance can reach, so any user
    /// who owns a namespace can make the index POST to internal addresses; list the
    /// receivers here to prevent that.
    pub allowed_hosts: Vec<String>,
    /// Attempts per delivery before it is marked `failed`; default 12.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubles per failed attempt (±20% jitter); default 5.
    pub retry_base_secs: u64,
    /// Longest wait between attempts, seconds; default 3600.
    pub retry_max_secs: u64,
    /// `[[index.webhooks.global]]`: hooks every repository's events go to.
    pub global: Vec<GlobalHookConfig>,
}

// Not derived: the numbers' defaults are not 0.
impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: false,
            proxy: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            ca_file: None,
            allow_http: false,
            allowed_hosts: Vec::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base_secs: DEFAULT_RETRY_BASE_SECS,
            retry_max_secs: DEFAULT_RETRY_MAX_SECS,
            global: Vec::new(),
        }
    }
}

/// A hook the operator configures for every repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalHookConfig {
    /// Names the hook in delivery history (letters, digits, `-`, `_`, `.`; unique).
    pub name: String,
    pub url: String,
    /// File holding the signing secret (trailing whitespace ignored; 16 characters at
    /// least). Read at startup.
    pub secret_file: PathBuf,
    /// `["push"]` (default) or `["push", "delete"]`.
    #[serde(default = "push_only")]
    pub events: Vec<WebhookEvent>,
}

fn push_only() -> Vec<WebhookEvent> {
    vec![WebhookEvent::Push]
}

impl WebhooksConfig {
    /// Semantic checks beyond the TOML schema; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(proxy) = &self.proxy {
            crate::client::parse_proxy(proxy, "index.webhooks.proxy")?;
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err("index.webhooks.timeout_secs: must be between 1 and 300".into());
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err("index.webhooks.max_attempts: must be between 1 and 100".into());
        }
        if !(1..=3600).contains(&self.retry_base_secs) {
            return Err("index.webhooks.retry_base_secs: must be between 1 and 3600".into());
        }
        if self.retry_max_secs < self.retry_base_secs || self.retry_max_secs > 86_400 {
            return Err(
                "index.webhooks.retry_max_secs: must be at least retry_base_secs and at most 86400"
                    .into(),
            );
        }
        let mut names = HashSet::new();
        for hook in &self.global {
            let key = |what: &str| format!("index.webhooks.global {:?}: {what}", hook.name);
            if !valid_name(&hook.name) {
                return Err(format!(
                    "index.webhooks.global: name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                    hook.name
                ));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(key("the name is used twice"));
            }
            check_url(&hook.url, self.allow_http, &self.allowed_hosts)
                .map_err(|e| key(&format!("url: {e}")))?;
            check_events(&hook.events).map_err(|e| key(&format!("events: {e}")))?;
        }
        Ok(())
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A hook's events: at least one, each once.
pub fn check_events(events: &[WebhookEvent]) -> Result<(), String> {
    if events.is_empty() {
        return Err("at least one of \"push\", \"delete\" is needed".into());
    }
    let unique: HashSet<_> = events.iter().collect();
    if unique.len() != events.len() {
        return Err("an event is listed twice".into());
    }
    Ok(())
}

/// Checks a hook URL: absolute `https://` (or `http://` when `allow_http`), with a host, no
/// credentials (they would show wherever the URL does; the secret signs instead), no
/// fragment, at most [`MAX_URL_LEN`] bytes, and a host `allowed_hosts` lists (when it lists
/// any).
pub fn check_url(text: &str, allow_http: bool, allowed_hosts: &[String]) -> Result<Url, String> {
    if text.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(
                "must be https:// (http:// only with [index.webhooks] allow_http = true)".into(),
            )
        }
        other => return Err(format!("scheme {other}:// is not supported; use https://")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (user:password@)".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    if !allowed_hosts.is_empty() && !allowed_hosts.iter().any(|a| host_matches(a, &host)) {
        return Err(format!(
            "host {host} is not in [index.webhooks] allowed_hosts"
        ));
    }
    Ok(url)
}

/// `pattern` is a host name or address (`hooks.example.org`, `[::1]`) or `*.example.org`
/// (any name below example.org, not example.org itself).
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebhooksConfig, String> {
        let c: WebhooksConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_send_nothing() {
        let c = parse("").unwrap();
        assert!(!c.enabled && !c.allow_http);
        assert_eq!(
            (
                c.timeout_secs,
                c.max_attempts,
                c.retry_base_secs,
                c.retry_max_secs
            ),
            (10, 12, 5, 3600)
        );
        assert!(c.global.is_empty() && c.proxy.is_none() && c.ca_file.is_none());
        WebhooksConfig::default().validate().unwrap();
    }

    #[test]
    fn every_key_parses_and_unknown_keys_are_refused() {
        let c = parse(
            r#"
            enabled = true
            proxy = "http://proxy:3128"
            timeout_secs = 5
            ca_file = "/etc/holdfast/hooks-ca.pem"
            allow_http = false
            max_attempts = 3
            retry_base_secs = 2
            retry_max_secs = 60
            [[global]]
            name = "ci"
            url = "https://ci.example/hooks/holdfast?team=a"
            secret_file = "/etc/holdfast/ci.secret"
            [[global]]
            name = "audit.log"
            url = "https://audit.example/in"
            secret_file = "/etc/holdfast/audit.secret"
            events = ["push", "delete"]
            "#,
        )
        .unwrap();
        assert_eq!(c.global[0].events, [WebhookEvent::Push]);
        assert_eq!(
            c.global[1].events,
            [WebhookEvent::Push, WebhookEvent::Delete]
        );
        assert!(parse("enable = true").is_err());
        assert!(parse("[[global]]\nname = \"x\"\nurl = \"https://x\"\nsecret_file = \"/s\"\nsecret = \"inline\"").is_err());
        assert!(parse("[[global]]\nname = \"x\"\nurl = \"https://x\"\nsecret_file = \"/s\"\nevents = [\"pull\"]").is_err());
    }

    #[test]
    fn global_hooks_are_checked() {
        let hook = |name: &str, url: &str, events: &str| {
            format!("[[global]]\nname = {name:?}\nurl = {url:?}\nsecret_file = \"/s\"\nevents = {events}\n")
        };
        for (text, key) in [
            (hook("", "https://x", "[\"push\"]"), "name"),
            (hook("a b", "https://x", "[\"push\"]"), "name"),
            (hook("a", "http://x", "[\"push\"]"), "url"),
            (hook("a", "https://u:p@x", "[\"push\"]"), "url"),
            (hook("a", "ftp://x", "[\"push\"]"), "url"),
            (hook("a", "https://x", "[]"), "events"),
            (hook("a", "https://x", "[\"push\", \"push\"]"), "events"),
            (
                format!(
                    "{}{}",
                    hook("a", "https://x", "[\"push\"]"),
                    hook("a", "https://y", "[\"push\"]")
                ),
                "twice",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(
                err.contains(key) && err.starts_with("index.webhooks"),
                "{text}: {err}"
            );
        }
        parse(&format!(
            "allow_http = true\n{}",
            hook("a", "http://127.0.0.1:9/x", "[\"push\"]")
        ))
        .unwrap();
    }

    #[test]
    fn numbers_and_proxy_are_bounded() {
        for bad in [
            "timeout_secs = 0",
            "timeout_secs = 301",
            "max_attempts = 0",
            "retry_base_secs = 0",
            "retry_base_secs = 10\nretry_max_secs = 5",
            "proxy = \"socks5://p:1080\"",
            "proxy = \"nonsense\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for ok in ["https://hooks.example/x", "https://10.0.0.5:8443/a?b=c"] {
            check_url(ok, false, &[]).unwrap();
        }
        check_url("http://127.0.0.1:8080/hook", true, &[]).unwrap();
        for bad in [
            "http://hooks.example/x",
            "https://user@hooks.example/",
            "https://hooks.example/#frag",
            "hooks.example/x",
            "file:///etc/passwd",
            "",
        ] {
            assert!(check_url(bad, false, &[]).is_err(), "{bad}");
        }
        let long = format!("https://h.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_url(&long, true, &[]).is_err());
        let allowed = ["hooks.example.org".to_owned(), "*.ci.example".to_owned()];
        for ok in [
            "https://hooks.example.org/x",
            "https://HOOKS.example.org/x",
            "https://a.ci.example/x",
            "https://a.b.ci.example:8443/x",
        ] {
            check_url(ok, false, &allowed).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://example.org/x",
            "https://ci.example/x",
            "https://evilci.example/x",
            "https://hooks.example.org.evil.net/x",
            "https://10.0.0.1/x",
        ] {
            assert!(check_url(bad, false, &allowed).is_err(), "{bad}");
        }
    }
}
