//! Webhooks: after a push (a manifest committed) and, for hooks that ask, after a delete,
//! the index POSTs a signed JSON document to each hook's URL. Hooks are per repository
//! (managed by its owners through the API, `api_webhooks`) or global (the config's
//! `[[index.webhooks.global]]`). This module owns the runtime side: the settings and
//! global hooks loaded at startup, the outbound HTTP client, the signature, and waking the
//! delivery [`worker`]; the durable outbox itself is in the store (`store/webhooks.rs`),
//! and what a repository's managers do with its hooks is in [`owners`].
//!
//! # Delivery
//!
//! The delivery is queued in the same SQLite transaction that records the push, so it
//! survives a crash or restart at any point after the push was recorded, and a registry
//! event applied twice (retried) is queued once. The worker sends it until the receiver
//! answers 2xx, waiting `retry_base_secs` doubling per failed attempt (±20% jitter, at most
//! `retry_max_secs`), and marks it `failed` after `max_attempts`. Every attempt of a
//! delivery, including after a restart or a redeliver, carries the same delivery id, so a
//! receiver that remembers ids acts once: an attempt interrupted by a crash after the
//! receiver got it is sent again with the same id (at-least-once with a stable id; never
//! two different deliveries for one event and hook). Redirects are not followed (a 3xx
//! is a failed attempt), so a payload only ever goes to a configured URL. Deliveries are
//! sent a few at a time and retried independently, so they may arrive out of order;
//! `pushed_at` orders them. Finished deliveries are kept for their history for
//! [`worker::HISTORY_DAYS`] days.
//!
//! # Payload
//!
//! `Content-Type: application/json`, fields in this order:
//!
//! ```json
//! {"id": "<delivery id: 32 hex digits>", "event": "push" | "delete",
//!  "repository": "team/app", "tag": "v1" | null, "digest": "sha256:…" | null,
//!  "media_type": "application/vnd.oci.image.manifest.v1+json" | null, "size": 1234 | null,
//!  "pusher": "alice" | null, "pushed_at": "2026-01-01T12:00:00Z",
//!  "registry": "registry.example:5000"}
//! ```
//!
//! For a push, `tag` is null when pushed by digest. For a delete, `pusher` and `pushed_at`
//! are who deleted and when; a deleted tag has the digest, media type and size of the
//! manifest it pointed at (null if the index did not know it); a deleted manifest has
//! `tag` null. `registry` is `[index] public_host`, so `registry/repository:tag` is a
//! pullable reference.
//!
//! # Headers and signature
//!
//! - `X-Holdfast-Delivery`: the delivery id (the same as the body's `id`);
//! - `X-Holdfast-Event`: `push` or `delete`;
//! - `X-Holdfast-Timestamp`: unix seconds when this attempt was sent;
//! - `X-Holdfast-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes, keyed
//!   with the hook's secret.
//!
//! The signature covers the body only (as the feature was specified). The body holds the
//! delivery id and the event time, so a receiver rejects replays by remembering the ids
//! it has seen (and may refuse events older than its memory); the timestamp header tells
//! how late an attempt is but, not being signed, is advisory.

pub mod config;
pub mod owners;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use sha2::Sha256;
use tokio::sync::Notify;

pub use config::{GlobalHookConfig, WebhooksConfig};

use crate::index::store::{Fanout, GlobalSubscription, WebhookEvent, WebhookSecret};

pub const DELIVERY_HEADER: &str = "x-holdfast-delivery";
pub const EVENT_HEADER: &str = "x-holdfast-event";
pub const TIMESTAMP_HEADER: &str = "x-holdfast-timestamp";
pub const SIGNATURE_HEADER: &str = "x-holdfast-signature";

/// Why webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Config(String),
    #[error("webhook secret file {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("webhook CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("building the webhook HTTP client: {0}")]
    Client(String),
}

/// A global hook as loaded at startup (its secret read from its file).
#[derive(Debug, Clone)]
pub struct GlobalHook {
    pub name: String,
    pub url: Url,
    secret: WebhookSecret,
    pub events: Vec<WebhookEvent>,
}

/// Enabled webhooks: settings, global hooks, the HTTP client and the worker's wake-up
/// call. Exists only when `[index.webhooks] enabled = true`.
#[derive(Debug)]
pub struct Webhooks {
    allow_http: bool,
    allowed_hosts: Vec<String>,
    max_attempts: u32,
    retry_base_secs: u64,
    retry_max_secs: u64,
    global: Vec<GlobalHook>,
    fanout: Arc<Fanout>,
    client: reqwest::Client,
    wake: Notify,
}

impl Webhooks {
    /// The enabled webhooks of `config`, with `public_host` as the payloads' `registry`;
    /// `None` when disabled. Reads the global hooks' secret files and the CA file and
    /// builds the HTTP client, so any problem stops startup.
    pub fn from_config(
        config: &WebhooksConfig,
        public_host: &str,
    ) -> Result<Option<Arc<Webhooks>>, WebhookError> {
        if !config.enabled {
            return Ok(None);
        }
        config.validate().map_err(WebhookError::Config)?;
        let mut global = Vec::new();
        for hook in &config.global {
            let url = config::check_url(&hook.url, config.allow_http, &config.allowed_hosts)
                .map_err(|e| {
                    WebhookError::Config(format!("index.webhooks.global {:?}: url: {e}", hook.name))
                })?;
            global.push(GlobalHook {
                name: hook.name.clone(),
                url,
                secret: read_secret(&hook.secret_file)?,
                events: hook.events.clone(),
            });
        }
        let fanout = Arc::new(Fanout {
            registry: public_host.to_owned(),
            global: global
                .iter()
                .map(|g| GlobalSubscription {
                    name: g.name.clone(),
                    events: g.events.clone(),
                })
                .collect(),
        });
        Ok(Some(Arc::new(Webhooks {
            allow_http: config.allow_http,
            allowed_hosts: config.allowed_hosts.clone(),
            max_attempts: config.max_attempts,
            retry_base_secs: config.retry_base_secs,
            retry_max_secs: config.retry_max_secs,
            global,
            fanout,
            client: build_client(config)?,
            wake: Notify::new(),
        })))
    }

    /// What a registry event fans out to (passed to the store with the event).
    pub fn fanout(&self) -> Arc<Fanout> {
        self.fanout.clone()
    }

    /// Tells the worker there may be new deliveries (after an event was applied), so they
    /// go out at once rather than at its next periodic look. Cheap; callable from blocking
    /// code.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether `http://` hook URLs are allowed.
    pub fn allow_http(&self) -> bool {
        self.allow_http
    }

    /// Hosts hook URLs may point at (empty: any).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    pub fn global_hooks(&self) -> &[GlobalHook] {
        &self.global
    }

    fn global_hook(&self, name: &str) -> Option<&GlobalHook> {
        self.global.iter().find(|g| g.name == name)
    }
}

/// The HTTP client for deliveries: no redirects, the configured timeout, the system roots
/// plus `ca_file`, the configured proxy or none (never the environment's).
fn build_client(config: &WebhooksConfig) -> Result<reqwest::Client, WebhookError> {
    let timeout = config.timeout();
    let proxy = match &config.proxy {
        Some(p) => Some(
            crate::client::parse_proxy(p, "index.webhooks.proxy").map_err(WebhookError::Config)?,
        ),
        None => None,
    };
    crate::client::build(&crate::client::Outbound {
        timeout,
        connect_timeout: timeout,
        // Checked again per request: a hook stored while http was allowed is not sent in
        // clear text after the operator turned that off.
        https_only: !config.allow_http,
        user_agent: concat!("holdfast-webhooks/", env!("CARGO_PKG_VERSION")),
        // Added to the system's roots: receivers are usually public services, sometimes
        // behind an internal CA.
        roots: match &config.ca_file {
            Some(path) => crate::client::Roots::SystemAnd(path),
            None => crate::client::Roots::System,
        },
        proxy: proxy.as_ref(),
    })
    .map_err(|e| match e {
        crate::client::OutboundError::Ca { path, message } => WebhookError::Ca { path, message },
        crate::client::OutboundError::Proxy(m) => {
            WebhookError::Config(format!("index.webhooks.proxy: {m}"))
        }
        crate::client::OutboundError::Client(m) => WebhookError::Client(m),
    })
}

/// Checks a hook secret: [`config::MIN_SECRET_LEN`] to [`config::MAX_SECRET_LEN`]
/// characters, no control characters. The message never quotes the secret.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let n = secret.chars().count();
    if n < config::MIN_SECRET_LEN {
        return Err(format!(
            "the secret must be at least {} characters",
            config::MIN_SECRET_LEN
        ));
    }
    if n > config::MAX_SECRET_LEN {
        return Err(format!(
            "the secret must be at most {} characters",
            config::MAX_SECRET_LEN
        ));
    }
    if secret.chars().any(char::is_control) {
        return Err("the secret must not contain control characters".into());
    }
    Ok(())
}

/// Reads a global hook's secret from `path`, ignoring trailing whitespace (the newline
/// editors add).
fn read_secret(path: &Path) -> Result<WebhookSecret, WebhookError> {
    let err = |message: String| WebhookError::Secret {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text.trim_end();
    check_secret(secret).map_err(err)?;
    Ok(WebhookSecret::new(secret.to_owned()))
}

/// `X-Holdfast-Signature` for `body`: `sha256=` and the hex HMAC-SHA256 of the body keyed
/// with `secret`.
pub fn signature(secret: &WebhookSecret, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it, and an empty MAC
    // would only make the receiver refuse the delivery.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => "sha256=".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let secret = WebhookSecret::new("Jefe".into());
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_are_checked_without_being_quoted() {
        assert!(check_secret("0123456789abcdef").is_ok());
        for bad in ["short", "0123456789abcde\n", &"x".repeat(257)] {
            let e = check_secret(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
    }

    #[test]
    fn disabled_is_none_and_enabled_loads_global_hooks() {
        assert!(Webhooks::from_config(&WebhooksConfig::default(), "h")
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ci.secret");
        std::fs::write(&file, "0123456789abcdef-ci\n").unwrap();
        let config = WebhooksConfig {
            enabled: true,
            global: vec![GlobalHookConfig {
                name: "ci".into(),
                url: "https://ci.example/hook".into(),
                secret_file: file.clone(),
                events: vec![WebhookEvent::Push],
            }],
            ..WebhooksConfig::default()
        };
        let hooks = Webhooks::from_config(&config, "registry.example")
            .unwrap()
            .unwrap();
        assert_eq!(
            hooks.global_hooks()[0].secret.expose(),
            "0123456789abcdef-ci"
        );
        assert_eq!(hooks.fanout().registry, "registry.example");
        assert_eq!(hooks.fanout().global[0].name, "ci");
        // A short secret or a missing file stops startup, naming the file.
        std::fs::write(&file, "short\n").unwrap();
        let e = Webhooks::from_config(&config, "h").unwrap_err().to_string();
        assert!(e.contains("ci.secret") && !e.contains("short"), "{e}");
        std::fs::remove_file(&file).unwrap();
        assert!(Webhooks::from_config(&config, "h").is_err());
    }
}
