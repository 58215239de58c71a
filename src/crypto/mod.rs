//! The process's one cryptography provider, *ring*, for everything that needs one: rustls
//! (serving TLS, and reqwest's outbound clients) and jsonwebtoken (signing and verifying
//! tokens). `install()` registers it as the process default; it is idempotent, and every
//! path that needs a default (start-up, `client::build`, the key constructors) calls it.
//!
//! Why ring and not aws-lc-rs: aws-lc seeds its random generator from CPU jitter entropy
//! on first use, 30–36 ms of CPU on this machine class (it was 40% of start-up to the first
//! `GET /v2/`), and turning that off is a build-time environment variable every build would
//! have to carry. ring draws from the kernel (`getrandom`) in microseconds; its TLS bulk
//! rate measured the same as aws-lc's for the default suite (see README "Performance").

mod jwt;

use std::sync::{Arc, Once};

/// The rustls provider every TLS configuration in holdfast is built with.
pub fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process default for rustls (reqwest looks it up there) and for
/// jsonwebtoken. Safe to call any number of times, from any thread.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a default is already installed; holdfast installs nothing else, so it
        // is this one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = jwt::PROVIDER.install_default();
    });
}
