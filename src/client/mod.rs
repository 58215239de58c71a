//! The client role's shared parts: how holdfast builds an HTTP client when a configured
//! feature connects out (events to a custom index, webhooks). Every such client follows the
//! appliance's rules: it connects only where its feature was told to, never through a
//! proxy taken from the environment (only the one configured for the feature), follows no
//! redirects, and trusts either the system's roots, the system's plus a configured CA
//! bundle, or only that bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// The system's trusted roots.
    System,
    /// The system's roots and the PEM bundle at the path.
    SystemAnd(&'a Path),
    /// Only the PEM bundle at the path (e.g. a holdfast index's own local CA).
    Only(&'a Path),
}

/// What an outbound client is built from.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    /// The whole of one request (connect, send, answer).
    pub timeout: Duration,
    /// Connecting alone.
    pub connect_timeout: Duration,
    /// Refuse `http://` URLs.
    pub https_only: bool,
    pub user_agent: &'static str,
    pub roots: Roots<'a>,
    /// The configured proxy URL (already checked with [`parse_proxy`]), or none: direct.
    pub proxy: Option<&'a Url>,
}

/// Why an outbound client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("CA bundle {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Builds the client `spec` describes.
pub fn build(spec: &Outbound<'_>) -> Result<reqwest::Client, OutboundError> {
    // reqwest takes rustls' process default provider.
    crate::crypto::install();
    let mut builder = reqwest::Client::builder()
        .timeout(spec.timeout)
        .connect_timeout(spec.connect_timeout)
        // An answer from wherever a redirect leads is not the configured peer's: a
        // redirect is a failed attempt, never followed.
        .redirect(reqwest::redirect::Policy::none())
        .https_only(spec.https_only)
        .user_agent(spec.user_agent);
    match spec.roots {
        Roots::System => {}
        Roots::SystemAnd(path) => builder = builder.tls_certs_merge(read_bundle(path)?),
        Roots::Only(path) => builder = builder.tls_certs_only(read_bundle(path)?),
    }
    builder = match spec.proxy {
        Some(url) => builder.proxy(
            reqwest::Proxy::all(url.as_str()).map_err(|e| OutboundError::Proxy(e.to_string()))?,
        ),
        // The appliance connects nowhere it was not told to: no HTTP(S)_PROXY from the
        // environment.
        None => builder.no_proxy(),
    };
    builder
        .build()
        .map_err(|e| OutboundError::Client(error_chain(&e)))
}

fn read_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, OutboundError> {
    let ca_err = |message: String| OutboundError::Ca {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Checks a configured proxy URL (`http://` or `https://` with a host); `key` names the
/// setting in the message.
pub fn parse_proxy(text: &str, key: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{key}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{key}: scheme {}:// is not supported; use http:// or https://",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err(format!("{key}: no host"));
    }
    Ok(url)
}

/// An error with its causes: reqwest's own message rarely says what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies() {
        assert!(parse_proxy("http://proxy:3128", "k").is_ok());
        assert!(parse_proxy("https://proxy", "k").is_ok());
        let e = parse_proxy("socks5://proxy:1080", "events.proxy").unwrap_err();
        assert!(e.starts_with("events.proxy: scheme socks5://"), "{e}");
        assert!(parse_proxy("not a url", "k").is_err());
    }

    #[test]
    fn bundles() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let spec = |roots| Outbound {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            https_only: true,
            user_agent: "t",
            roots,
            proxy: None,
        };
        assert!(matches!(
            build(&spec(Roots::Only(&empty))),
            Err(OutboundError::Ca { .. })
        ));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            build(&spec(Roots::SystemAnd(&missing))),
            Err(OutboundError::Ca { .. })
        ));
        assert!(build(&spec(Roots::System)).is_ok());
    }

    #[test]
    fn chains_name_every_cause() {
        let inner = std::io::Error::other("inner cause");
        let outer = std::io::Error::other(OuterError(inner));
        assert!(error_chain(&outer).contains("inner cause"));
    }

    #[derive(Debug)]
    struct OuterError(std::io::Error);
    impl std::fmt::Display for OuterError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for OuterError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
