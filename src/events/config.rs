//! `[events]`: where a registry sends its events when the index is a separate process
//! (a custom index), how it authenticates, which CA it trusts and through which proxy it
//! connects. Unset, nothing is sent and no outbound connection is ever made.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::EVENTS_PATH;

/// Check-in interval when `poll_secs` is not given.
pub const DEFAULT_POLL_SECS: u64 = 10;
/// Request timeout when `timeout_secs` is not given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Longest request timeout accepted: a stuck request holds up every later event.
const MAX_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The custom index's base URL, `https://host:port` (a path prefix is allowed; events
    /// go to `<index_url>/api/v1/events`). `http://` only to a loopback host. None: no
    /// events are sent anywhere (the default; no outbound connections).
    pub index_url: Option<String>,
    /// File holding the shared secret, the same content as configured on the index;
    /// trailing whitespace (a final newline) is ignored. Required with `index_url`.
    pub secret_file: Option<PathBuf>,
    /// PEM CA bundle that alone is trusted for the index's certificate, e.g. the index's
    /// `<data>/tls/ca.crt`. None: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Outbound HTTP(S) proxy for this connection only, e.g. `http://proxy:3128`. None:
    /// direct; the `HTTP(S)_PROXY` environment variables are never consulted.
    pub proxy: Option<String>,
    /// Seconds one delivery attempt (connect, send, answer) may take; default 30.
    pub timeout_secs: u64,
    /// Seconds between check-ins while there is nothing to report; the index answers a
    /// check-in with the repository deletions it asks of this registry. Default 10.
    pub poll_secs: u64,
}

// Not derived: the timeout's default is 30 s, not 0.
impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            index_url: None,
            secret_file: None,
            ca_file: None,
            proxy: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            poll_secs: DEFAULT_POLL_SECS,
        }
    }
}

impl EventsConfig {
    /// Whether events are to be sent at all.
    pub fn enabled(&self) -> bool {
        self.index_url.is_some()
    }

    /// Semantic checks beyond the TOML schema; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(proxy) = &self.proxy {
            crate::client::parse_proxy(proxy, "events.proxy")?;
        }
        if self.poll_secs == 0 || self.poll_secs > 3600 {
            return Err("events.poll_secs: must be between 1 and 3600".into());
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(format!(
                "events.timeout_secs: must be between 1 and {MAX_TIMEOUT_SECS}"
            ));
        }
        let Some(url) = &self.index_url else {
            // Settings that do nothing without a URL are more likely a mistake (events
            // silently not sent) than intent.
            for (key, set) in [
                ("secret_file", self.secret_file.is_some()),
                ("ca_file", self.ca_file.is_some()),
                ("proxy", self.proxy.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "events.{key} is set but events.index_url is not: no events would be sent"
                    ));
                }
            }
            return Ok(());
        };
        parse_index_url(url)?;
        if self.secret_file.is_none() {
            return Err("events.secret_file: required with events.index_url".into());
        }
        Ok(())
    }

    /// The URL batches are posted to. Errors as `validate` does.
    pub fn endpoint(&self) -> Result<Url, String> {
        let base = self
            .index_url
            .as_deref()
            .ok_or_else(|| "events.index_url: not set".to_owned())?;
        let base = parse_index_url(base)?;
        let joined = format!("{}{EVENTS_PATH}", base.as_str().trim_end_matches('/'));
        Url::parse(&joined).map_err(|e| format!("events.index_url: {e}"))
    }

    pub fn poll(&self) -> Duration {
        Duration::from_secs(self.poll_secs)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

fn parse_index_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("events.index_url: {e}"))?;
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("events.index_url: no host".into());
    };
    // Credentials in the URL would end up in logs; the secret goes in secret_file.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "events.index_url: must not contain credentials; use events.secret_file".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("events.index_url: must not have a query or fragment".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            // Plain HTTP would expose the shared secret on the wire; only the local host
            // (a same-host index, or tests) is allowed it.
            // host_str writes IPv6 addresses in brackets.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(url)
            } else {
                Err("events.index_url: must be https:// (http:// only to a loopback host)".into())
            }
        }
        other => Err(format!(
            "events.index_url: scheme {other}:// is not supported; use https://"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> EventsConfig {
        EventsConfig {
            index_url: Some(url.into()),
            secret_file: Some("/etc/holdfast/events.secret".into()),
            ..EventsConfig::default()
        }
    }

    #[test]
    fn default_sends_nothing_and_is_valid() {
        let c = EventsConfig::default();
        assert!(!c.enabled());
        assert_eq!(c.timeout_secs, 30);
        c.validate().unwrap();
        let parsed: EventsConfig = toml::from_str("").unwrap();
        assert_eq!(parsed.timeout_secs, 30);
        assert!(parsed.index_url.is_none());
    }

    #[test]
    fn toml_keys_parse_and_unknown_keys_are_refused() {
        let c: EventsConfig = toml::from_str(
            r#"
            index_url = "https://index.example:8443"
            secret_file = "/run/credentials/events.secret"
            ca_file = "/var/lib/holdfast/tls/ca.crt"
            proxy = "http://proxy:3128"
            timeout_secs = 5
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert!(toml::from_str::<EventsConfig>("index = \"x\"").is_err());
    }

    #[test]
    fn https_and_loopback_http_are_accepted() {
        for url in [
            "https://index.example",
            "https://index.example:8443/",
            "https://10.0.0.5:8443/prefix",
            "http://127.0.0.1:9000",
            "http://127.1.2.3",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            with_url(url)
                .validate()
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn other_urls_are_refused_with_the_key_named() {
        for url in [
            "http://index.example",
            "http://10.0.0.5:9000",
            "http://[::2]:9000",
            "ftp://index.example",
            "index.example:8443",
            "https://user:pw@index.example",
            "https://index.example/?x=1",
            "https://index.example/#f",
            "",
        ] {
            let err = with_url(url).validate().unwrap_err();
            assert!(err.starts_with("events.index_url"), "{url}: {err}");
        }
    }

    #[test]
    fn secret_file_is_required_with_a_url() {
        let c = EventsConfig {
            secret_file: None,
            ..with_url("https://index.example")
        };
        let err = c.validate().unwrap_err();
        assert!(err.contains("events.secret_file"), "{err}");
    }

    #[test]
    fn settings_without_a_url_are_refused() {
        let c = EventsConfig {
            ca_file: Some("/tmp/ca.crt".into()),
            ..EventsConfig::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.contains("events.ca_file"), "{err}");
    }

    #[test]
    fn proxy_must_be_an_http_url() {
        for (proxy, ok) in [
            ("http://proxy:3128", true),
            ("https://proxy.example", true),
            ("proxy:3128", false),
            ("not a url", false),
            ("socks5://proxy:1080", false),
        ] {
            let c = EventsConfig {
                proxy: Some(proxy.into()),
                ..with_url("https://index.example")
            };
            let r = c.validate();
            assert_eq!(r.is_ok(), ok, "{proxy}: {r:?}");
            if let Err(e) = r {
                assert!(e.starts_with("events.proxy"), "{e}");
            }
        }
    }

    #[test]
    fn timeout_must_be_positive_and_bounded() {
        for (secs, ok) in [(0, false), (1, true), (3600, true), (3601, false)] {
            let c = EventsConfig {
                timeout_secs: secs,
                ..with_url("https://index.example")
            };
            assert_eq!(c.validate().is_ok(), ok, "{secs}");
        }
    }

    #[test]
    fn endpoint_appends_the_events_path() {
        for (base, want) in [
            ("https://i.example", "https://i.example/api/v1/events"),
            (
                "https://i.example:8443/",
                "https://i.example:8443/api/v1/events",
            ),
            (
                "https://i.example/idx/",
                "https://i.example/idx/api/v1/events",
            ),
            ("http://127.0.0.1:9", "http://127.0.0.1:9/api/v1/events"),
        ] {
            assert_eq!(with_url(base).endpoint().unwrap().as_str(), want);
        }
        assert!(EventsConfig::default().endpoint().is_err());
    }
}
