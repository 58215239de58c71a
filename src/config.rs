//! The configuration file: its TOML schema, the embedded defaults used when no file is
//! given, and validation. Unknown keys and bad values are errors that name the key and line
//! (serde's `deny_unknown_fields` plus toml's spans); semantic checks add the key by name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{AccessRule, AuthSettings};

/// Where the default config keeps its data, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./holdfast-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// Where systemd puts `LoadCredential=` files for the service.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    /// `[monitoring]`: an optional separate listener for health and metrics.
    pub monitoring: MonitoringConfig,
    /// `[token]`: Bearer tokens (with `[auth] mode = "token"`).
    pub token: TokenConfig,
    /// `[index]`: the embedded index (token service) in this process.
    pub index: IndexConfig,
    /// `[events]`: reporting pushes and deletes to a custom index in another process.
    pub events: crate::events::EventsConfig,
    /// `[auth]`: users, password checking, throttling (see `crate::auth`).
    pub auth: AuthSettings,
    /// `[[access]]`: who may pull, push and delete where (default deny).
    pub access: Vec<AccessRule>,
    /// The file this came from (`None` for the embedded default); not a TOML key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to listen on, `IP:PORT`.
    pub listen: Vec<String>,
    /// Seconds a TLS handshake may take before the connection is dropped.
    pub handshake_timeout_secs: u64,
    /// Seconds to wait for a started request's headers; also how long a connection may sit
    /// with no request in flight (idle keep-alive, or silent after the TLS handshake).
    pub header_read_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Upper bound on the size of a request's header block, in bytes.
    pub max_header_bytes: usize,
    /// Most connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Client networks (CIDR) allowed to connect; others are closed before the TLS
    /// handshake. Empty: everyone.
    pub allow: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![DEFAULT_LISTEN.to_owned()],
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 30,
            shutdown_grace_secs: 30,
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
            allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `false` serves plain HTTP: only behind a TLS-terminating proxy.
    pub enabled: bool,
    /// PEM certificate chain; with `key`. When both are absent, a local CA and a server
    /// certificate are generated under `<storage.path>/tls/` on first run.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra subject alternative names for the generated certificate.
    pub generated_names: Vec<String>,
    /// PEM bundle of CAs whose client certificates are accepted (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `required` (no certificate, no connection) or `optional`.
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Required,
    Optional,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            cert: None,
            key: None,
            generated_names: Vec::new(),
            client_ca: None,
            client_auth: ClientAuth::Required,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Upload sessions untouched for this many hours are removed.
    pub upload_max_age_hours: u64,
    /// Below this much free space on the storage filesystem, new uploads are refused (507)
    /// while reads go on; they are accepted again once space returns.
    pub min_free_bytes: u64,
    /// Maintenance mode: every write (push, delete) is refused with a clear error.
    pub read_only: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from(DEFAULT_DATA_DIR),
            upload_max_age_hours: 24,
            min_free_bytes: 256 * 1024 * 1024,
            read_only: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest manifest accepted, in bytes (the spec suggests at least 4 MiB).
    pub manifest_max_bytes: u64,
    /// Largest blob accepted, in bytes; 0 means no limit beyond the disk.
    pub blob_max_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            manifest_max_bytes: 4 * 1024 * 1024,
            blob_max_bytes: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// `IP:PORT` for a plain-HTTP listener serving only `/healthz`, `/readyz` and
    /// `/metrics` (keep it on loopback or a management network). Unset: none.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Where clients fetch tokens (`WWW-Authenticate: Bearer realm=…`). With the embedded
    /// index the default is `https://<first listen address>/token`; set it to the address
    /// clients really use.
    pub realm: Option<String>,
    /// This registry's name in tokens (`service` in challenges, `aud` in tokens).
    pub service: String,
    /// The index's name (`iss` in tokens).
    pub issuer: String,
    /// PEM public keys of the indexes whose tokens this registry accepts (several at once
    /// for key rotation). The embedded index's own key is always trusted.
    pub trusted_keys: Vec<PathBuf>,
    /// Lifetime of issued access tokens, seconds (60 at least).
    pub lifetime_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "holdfast".to_owned(),
            issuer: "holdfast-index".to_owned(),
            trusted_keys: Vec::new(),
            lifetime_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Serve the token service (`/token`) in this process, signing with a key generated
    /// on first run under `<storage.path>/index/` (private key 0600).
    pub enabled: bool,
    /// `ed25519` (default) or `p256`.
    pub key_algorithm: crate::index::keys::KeyAlgorithm,
    /// More services (registries) this index issues tokens for, besides `[token] service`.
    /// A custom index (`holdfast index`) lists every registry that trusts it here.
    pub services: Vec<String>,
    /// Visibility of a repository when it is first pushed: `private` (default: only its
    /// namespace's owners, collaborators and rules see it) or `public` (anyone may pull).
    pub default_visibility: crate::index::store::Visibility,
    /// `[[index.namespaces]]`: organisation namespaces and their members, and per-namespace
    /// visibility of new repositories. Every user owns the namespace of their own name.
    pub namespaces: Vec<crate::index::namespaces::NamespaceConfig>,
    /// A file holding the secret registries present when they report pushes and deletes
    /// to this index (`POST /api/v1/events`); the same file's content goes into each
    /// registry's `[events] secret_file`. Unset: no registry may report (an embedded index
    /// needs none: its registry reports in-process).
    pub event_secret_file: Option<PathBuf>,
    /// The `host[:port]` clients use for the registry, shown in `docker pull` lines and sent
    /// in webhooks. Default: the host of `[token] realm`, else the first listen address.
    pub public_host: Option<String>,
    /// `[index.webhooks]`: signed notifications of pushes (and deletes) to configured URLs.
    /// Off unless `enabled = true`.
    pub webhooks: crate::index::webhooks::WebhooksConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `holdfast=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl Config {
    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// The embedded default, or `path`, with derived settings filled in (the users file
    /// defaults to `<storage.path>/users.toml`, so the server and `holdfast user` agree).
    pub fn load_resolved(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = Config::load(path)?;
        config.auth.users_file = Some(config.auth.users_file_or_default(&config.storage.path));
        config.resolve_credentials(std::env::var_os(CREDENTIALS_DIRECTORY).map(PathBuf::from))?;
        Ok(config)
    }

    /// A relative `[tls] cert`/`key` names a systemd credential (`LoadCredential=`), read
    /// from `$CREDENTIALS_DIRECTORY`; absolute paths are used as they are.
    pub fn resolve_credentials(
        &mut self,
        credentials_dir: Option<PathBuf>,
    ) -> Result<(), ConfigError> {
        let source = self.source.clone().unwrap_or_default();
        for (key, slot) in [
            ("tls.cert", &mut self.tls.cert),
            ("tls.key", &mut self.tls.key),
        ] {
            let Some(value) = slot.as_ref().filter(|p| p.is_relative()) else {
                continue;
            };
            match &credentials_dir {
                Some(dir) => *slot = Some(dir.join(value)),
                None => {
                    return Err(ConfigError::Invalid {
                        path: source,
                        key,
                        message: format!(
                            "{} is relative, which names a systemd credential, but CREDENTIALS_DIRECTORY is not set (use an absolute path outside systemd)",
                            value.display()
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Parses and validates TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if self.server.listen.is_empty() {
            return Err(invalid(
                "server.listen",
                "at least one address is needed".into(),
            ));
        }
        for a in &self.server.listen {
            a.parse::<SocketAddr>()
                .map_err(|e| invalid("server.listen", format!("{a:?} is not IP:PORT ({e})")))?;
        }
        for a in &self.server.allow {
            a.parse::<ipnet::IpNet>()
                .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "server.allow",
                        format!("{a:?} is not a CIDR like 192.0.2.0/24"),
                    )
                })?;
        }
        if let Some(m) = &self.monitoring.listen {
            m.parse::<SocketAddr>()
                .map_err(|e| invalid("monitoring.listen", format!("{m:?} is not IP:PORT ({e})")))?;
        }
        if self.auth.mode == crate::auth::AuthMode::Token {
            if !self.index.enabled && self.token.trusted_keys.is_empty() {
                return Err(invalid(
                    "token.trusted_keys",
                    "token mode without the embedded index needs the index's public key(s)".into(),
                ));
            }
            if !self.index.enabled && self.token.realm.is_none() {
                return Err(invalid(
                    "token.realm",
                    "token mode without the embedded index needs the index's token URL".into(),
                ));
            }
        }
        self.events.validate().map_err(|m| invalid("events", m))?;
        if self.events.enabled() && self.index.enabled {
            return Err(invalid(
                "events.index_url",
                "this registry runs the index itself ([index] enabled), which records its \
                 pushes in-process; [events] is for reporting to a custom index"
                    .into(),
            ));
        }
        crate::index::namespaces::validate(&self.index.namespaces)
            .map_err(|m| invalid("index.namespaces", m))?;
        self.index
            .webhooks
            .validate()
            .map_err(|m| invalid("index.webhooks", m))?;
        if self.token.lifetime_secs < 60 {
            return Err(invalid("token.lifetime_secs", "must be at least 60".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid(
                "tls.cert",
                "`cert` and `key` go together: set both or neither".into(),
            ));
        }
        if self.server.max_header_bytes < 8192 {
            return Err(invalid(
                "server.max_header_bytes",
                "must be at least 8192".into(),
            ));
        }
        if self.server.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.limits.manifest_max_bytes == 0 {
            return Err(invalid(
                "limits.manifest_max_bytes",
                "must be greater than 0".into(),
            ));
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty".into()));
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        // Validated in `validate`, so parsing cannot fail here; filter_map keeps it total.
        self.server
            .listen
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// The allow-list as networks (a bare address is a /32 or /128).
    pub fn allowed_networks(&self) -> Vec<ipnet::IpNet> {
        self.server
            .allow
            .iter()
            .filter_map(|a| {
                a.parse::<ipnet::IpNet>()
                    .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .ok()
            })
            .collect()
    }

    /// Where generated TLS material lives.
    pub fn generated_tls_dir(&self) -> PathBuf {
        self.storage.path.join("tls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn minimal_and_documented_keys() {
        let c = parse(
            "[server]\nlisten = [\"127.0.0.1:5000\"]\n[tls]\nenabled = true\ncert = \"/a.crt\"\nkey = \"/a.key\"\n[storage]\npath = \"/var/lib/holdfast\"\n",
        )
        .unwrap();
        assert_eq!(c.storage.path, PathBuf::from("/var/lib/holdfast"));
        assert_eq!(c.limits.manifest_max_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[server]\nlisten = [\"127.0.0.1:5000\"]\nlisen = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[server]\nlisten = [\"nonsense\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = parse("[tls]\ncert = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("tls.cert"), "{e}");
        let e = parse("[limits]\nmanifest_max_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("manifest_max_bytes"), "{e}");
    }

    #[test]
    fn relative_tls_paths_are_systemd_credentials() {
        let text = "[tls]\ncert = \"tls.crt\"\nkey = \"/abs/server.key\"\n";
        let mut c = parse(text).unwrap();
        c.resolve_credentials(Some(PathBuf::from("/run/credentials/holdfast.service")))
            .unwrap();
        assert_eq!(
            c.tls.cert.as_deref(),
            Some(Path::new("/run/credentials/holdfast.service/tls.crt"))
        );
        assert_eq!(c.tls.key.as_deref(), Some(Path::new("/abs/server.key")));
        let mut c = parse(text).unwrap();
        let e = c.resolve_credentials(None).unwrap_err().to_string();
        assert!(
            e.contains("tls.cert") && e.contains("CREDENTIALS_DIRECTORY"),
            "{e}"
        );
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../etc/holdfast.toml");
        parse(text).unwrap();
    }
}
