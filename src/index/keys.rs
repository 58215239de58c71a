//! The keys of token authentication. The index signs tokens with one private key
//! ([`SigningKey`], Ed25519 by default or ECDSA P-256), which it generates on first run and
//! keeps as PKCS#8 PEM readable only by its owner, with the public half written beside it
//! as SubjectPublicKeyInfo PEM for registries to trust. A registry trusts a set of public
//! keys ([`PublicKey`], several at once so keys can rotate without downtime), each named
//! by its `kid`: the RFC 7638 JWK thumbprint (SHA-256, base64url), the same identifier
//! CNCF distribution computes for the keys it trusts, so a token's `kid` header names
//! exactly one key and any party can recompute it from the public key alone.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The private key's file name inside the index's key folder.
pub const PRIVATE_KEY_FILE: &str = "token-signing.key";
/// The public key's file name inside the index's key folder.
pub const PUBLIC_KEY_FILE: &str = "token-signing.pub.pem";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480) with an uncompressed point,
/// followed by the 65 point bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The signature algorithms a token key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// Ed25519, JWS `EdDSA` (the default: small keys, deterministic signatures).
    #[default]
    Ed25519,
    /// ECDSA on P-256 with SHA-256, JWS `ES256` (for verifiers without EdDSA).
    #[serde(rename = "p256")]
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The JWS `alg` of tokens signed with such a key.
    pub fn jws_name(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "EdDSA",
            KeyAlgorithm::EcdsaP256 => "ES256",
        }
    }

    pub(crate) fn jwt_algorithm(self) -> Algorithm {
        match self {
            KeyAlgorithm::Ed25519 => Algorithm::EdDSA,
            KeyAlgorithm::EcdsaP256 => Algorithm::ES256,
        }
    }

    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("could not generate a signing key: {0}")]
    Generate(String),
}

impl KeyError {
    fn io(path: &Path, source: io::Error) -> Self {
        KeyError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            KeyError::Invalid(reason) => KeyError::Invalid(format!("{}: {reason}", path.display())),
            other => other,
        }
    }
}

/// A public key that verifies tokens, with its `kid`.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    /// Ed25519: the 32 key bytes; P-256: the 65-byte uncompressed point.
    raw: Vec<u8>,
    kid: String,
    decoding: DecodingKey,
}

impl PublicKey {
    /// A key from its raw bytes (32 for Ed25519, a 65-byte uncompressed point for P-256).
    pub fn from_raw(algorithm: KeyAlgorithm, raw: &[u8]) -> Result<Self, KeyError> {
        // jsonwebtoken verifies with the process default provider.
        crate::crypto::install();
        let decoding = match algorithm {
            KeyAlgorithm::Ed25519 if raw.len() == 32 => DecodingKey::from_ed_der(raw),
            KeyAlgorithm::EcdsaP256 if raw.len() == 65 && raw[0] == 0x04 => {
                DecodingKey::from_ec_der(raw)
            }
            _ => {
                return Err(KeyError::Invalid(format!(
                    "not a {} public key",
                    algorithm.jws_name()
                )))
            }
        };
        Ok(PublicKey {
            algorithm,
            raw: raw.to_vec(),
            kid: thumbprint(algorithm, raw),
            decoding,
        })
    }

    /// A key from DER SubjectPublicKeyInfo (Ed25519, or P-256 with an uncompressed point).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            return PublicKey::from_raw(KeyAlgorithm::Ed25519, raw);
        }
        if let Some(raw) = der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            return PublicKey::from_raw(KeyAlgorithm::EcdsaP256, raw);
        }
        Err(KeyError::Invalid(
            "unsupported public key (expected Ed25519 or ECDSA P-256)".to_owned(),
        ))
    }

    /// Every `PUBLIC KEY` block in PEM text (a file may list several keys). Other blocks
    /// are refused rather than skipped, so a private key pasted by mistake is noticed.
    pub fn from_pem(text: &str) -> Result<Vec<Self>, KeyError> {
        let blocks =
            pem::parse_many(text).map_err(|e| KeyError::Invalid(format!("bad PEM: {e}")))?;
        if blocks.is_empty() {
            return Err(KeyError::Invalid("no PEM block found".to_owned()));
        }
        blocks
            .iter()
            .map(|block| match block.tag() {
                "PUBLIC KEY" => PublicKey::from_spki_der(block.contents()),
                other => Err(KeyError::Invalid(format!(
                    "expected PUBLIC KEY blocks, found {other}"
                ))),
            })
            .collect()
    }

    /// The keys in a PEM file (see [`PublicKey::from_pem`]).
    pub fn load(path: &Path) -> Result<Vec<Self>, KeyError> {
        let text = fs::read_to_string(path).map_err(|e| KeyError::io(path, e))?;
        PublicKey::from_pem(&text).map_err(|e| e.in_file(path))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The RFC 7638 thumbprint that names this key in a token's `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw key bytes (see [`PublicKey::from_raw`]).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        let prefix: &[u8] = match self.algorithm {
            KeyAlgorithm::Ed25519 => &ED25519_SPKI_PREFIX,
            KeyAlgorithm::EcdsaP256 => &P256_SPKI_PREFIX,
        };
        [prefix, &self.raw].concat()
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM, as written beside the private key.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", self.spki_der())
    }

    /// The key as a JWK (RFC 7517/8037) with `kid`, `use` and `alg`: what a JWKS file for
    /// CNCF distribution's `auth.token.jwks` option lists.
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = jwk_members(self.algorithm, &self.raw);
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.algorithm.jws_name().into());
        serde_json::Value::Object(jwk)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.raw == other.raw
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish()
    }
}

/// The index's private signing key. Its `Debug` output shows only the algorithm and kid.
pub struct SigningKey {
    public: PublicKey,
    encoding: EncodingKey,
    pkcs8_der: Vec<u8>,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::generate_for(algorithm.rcgen())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        SigningKey::from_pkcs8_der(pair.serialized_der())
    }

    /// A key from `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM. SEC1 `EC PRIVATE KEY` files
    /// are refused: convert them with `openssl pkcs8 -topk8 -nocrypt`.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(text).map_err(|e| KeyError::Invalid(format!("bad PEM: {e}")))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::Invalid(format!(
                "expected a PKCS#8 PRIVATE KEY block, found {}",
                block.tag()
            )));
        }
        SigningKey::from_pkcs8_der(block.contents())
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        crate::crypto::install();
        let pair = rcgen::KeyPair::try_from(der)
            .map_err(|_| KeyError::Invalid("not a PKCS#8 private key".to_owned()))?;
        let algorithm = if pair.algorithm() == &rcgen::PKCS_ED25519 {
            KeyAlgorithm::Ed25519
        } else if pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else {
            return Err(KeyError::Invalid(
                "unsupported private key (expected Ed25519 or ECDSA P-256)".to_owned(),
            ));
        };
        let public = PublicKey::from_raw(algorithm, pair.public_key_raw())?;
        let encoding = match algorithm {
            KeyAlgorithm::Ed25519 => EncodingKey::from_ed_der(der),
            KeyAlgorithm::EcdsaP256 => EncodingKey::from_ec_der(der),
        };
        let key = SigningKey {
            public,
            encoding,
            pkcs8_der: der.to_vec(),
        };
        key.self_test()?;
        Ok(key)
    }

    /// Reads the key from a PEM file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(|e| KeyError::io(path, e))?;
        SigningKey::from_pkcs8_pem(&text).map_err(|e| e.in_file(path))
    }

    /// PKCS#8 PEM of the private key.
    pub fn to_pkcs8_pem(&self) -> String {
        pem_encode("PRIVATE KEY", self.pkcs8_der.clone())
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.algorithm()
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs and verifies a message, so a key the JWT library cannot use is refused when
    /// it is loaded instead of failing every token later.
    fn self_test(&self) -> Result<(), KeyError> {
        let alg = self.algorithm().jwt_algorithm();
        let message = b"holdfast token key self-test";
        let ok = jsonwebtoken::crypto::sign(message, &self.encoding, alg)
            .and_then(|sig| {
                jsonwebtoken::crypto::verify(&sig, message, self.public.decoding_key(), alg)
            })
            .map_err(|e| KeyError::Invalid(format!("key unusable for signing: {e}")))?;
        if ok {
            Ok(())
        } else {
            Err(KeyError::Invalid(
                "private and public key do not match".to_owned(),
            ))
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

/// `dir/token-signing.key`.
pub fn private_key_path(dir: &Path) -> PathBuf {
    dir.join(PRIVATE_KEY_FILE)
}

/// `dir/token-signing.pub.pem`.
pub fn public_key_path(dir: &Path) -> PathBuf {
    dir.join(PUBLIC_KEY_FILE)
}

/// The index's signing key from `dir`, made on first run. A new key is written with mode
/// 0600 through a temporary file (written, fsynced, then linked into place, so a crash
/// never leaves half a key and two processes starting at once end up with the same key);
/// `algorithm` only matters then, an existing key keeps its own. An existing key file that
/// does not parse is an error, never replaced. The public key beside it is derived and
/// rewritten whenever it is missing or does not match.
pub fn load_or_generate(dir: &Path, algorithm: KeyAlgorithm) -> Result<SigningKey, KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| KeyError::io(dir, e))?;
    let key_path = private_key_path(dir);
    let key = match fs::read_to_string(&key_path) {
        Ok(text) => {
            warn_if_exposed(&key_path);
            SigningKey::from_pkcs8_pem(&text).map_err(|e| e.in_file(&key_path))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = SigningKey::generate(algorithm)?;
            if write_new_file(&key_path, key.to_pkcs8_pem().as_bytes(), 0o600)? {
                tracing::info!(
                    path = %key_path.display(),
                    kid = key.kid(),
                    alg = key.algorithm().jws_name(),
                    "generated a new token signing key"
                );
                key
            } else {
                // Another process created it first: use theirs.
                SigningKey::load(&key_path)?
            }
        }
        Err(e) => return Err(KeyError::io(&key_path, e)),
    };
    let pub_path = public_key_path(dir);
    let current = PublicKey::load(&pub_path).ok();
    if current.as_deref() != Some(std::slice::from_ref(key.public_key())) {
        replace_file(&pub_path, key.public_key().to_pem().as_bytes(), 0o644)?;
    }
    Ok(key)
}

/// Reads every public key in `paths` (each file may hold several), dropping duplicates.
pub fn load_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, KeyError> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for path in paths {
        for key in PublicKey::load(path)? {
            if !keys.iter().any(|k| k.kid() == key.kid()) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// A JWKS document (`{"keys":[…]}`) listing `keys`.
pub fn jwks(keys: &[PublicKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(PublicKey::jwk).collect::<Vec<_>>() })
}

/// The RFC 7638 thumbprint: SHA-256 over the required JWK members in lexicographic order
/// without whitespace, base64url without padding.
fn thumbprint(algorithm: KeyAlgorithm, raw: &[u8]) -> String {
    let members = jwk_members(algorithm, raw);
    // serde_json's map keeps keys sorted (no `preserve_order`), and the values are plain
    // base64url and names, so this is the canonical form RFC 7638 asks for.
    let canonical = serde_json::Value::Object(members).to_string();
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The required public members of the key's JWK.
fn jwk_members(algorithm: KeyAlgorithm, raw: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    match algorithm {
        KeyAlgorithm::Ed25519 => {
            map.insert("crv".into(), "Ed25519".into());
            map.insert("kty".into(), "OKP".into());
            map.insert("x".into(), URL_SAFE_NO_PAD.encode(raw).into());
        }
        KeyAlgorithm::EcdsaP256 => {
            let point = raw.get(1..).unwrap_or_default();
            let (x, y) = point.split_at(point.len() / 2);
            map.insert("crv".into(), "P-256".into());
            map.insert("kty".into(), "EC".into());
            map.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
            map.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
        }
    }
    map
}

fn pem_encode(tag: &str, der: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
}

fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the token signing key is readable by others; chmod 600 it"
            );
        }
    }
}

/// A temporary file beside `path`, written with `contents` and fsynced.
fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<PathBuf, KeyError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| KeyError::Generate(e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; the wanted one is set explicitly (for the
        // private key it only ever narrows further).
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        KeyError::io(&tmp, e)
    })?;
    Ok(tmp)
}

/// Creates `path` with `contents` unless it exists; `Ok(false)` when it already did.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<bool, KeyError> {
    let tmp = write_temp(path, contents, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(KeyError::io(path, e)),
    }
}

/// Atomically replaces `path` with `contents`.
fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let tmp = write_temp(path, contents, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(KeyError::io(path, e));
    }
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = PublicKey::from_raw(KeyAlgorithm::Ed25519, &x).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn generate_and_reparse_both_algorithms() {
        for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            let key = SigningKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.kid().len(), 43, "{}", key.kid());
            let again = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.kid(), key.kid());
            let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
            assert_eq!(public, vec![key.public_key().clone()]);
            assert_eq!(public[0].kid(), key.kid());
            let jwk = key.public_key().jwk();
            assert_eq!(jwk["kid"], key.kid());
            assert_eq!(jwk["alg"], alg.jws_name());
            // Debug never shows key material.
            let shown = format!("{key:?}");
            assert!(!shown.contains("pkcs8"), "{shown}");
        }
        let a = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let b = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_ne!(a.kid(), b.kid());
    }

    /// Keys written by other generators load and sign: holdfast before 2026-11-25 (aws-lc:
    /// Ed25519 as PKCS#8 v2 with the public key, P-256) and OpenSSL 3 (`openssl genpkey`:
    /// Ed25519 as PKCS#8 v1 without it, P-256). Test-only keys.
    #[test]
    fn keys_from_other_generators_load() {
        let aws_lc_ed25519 = "-----BEGIN PRIVATE KEY-----
MFECAQEwBQYDK2VwBCIEIICOVzQjR7st+MB+A4dI8x9iRfs5/OkKEemHSZxc7+be
gSEAA0SUPkfXx6XTNkE94VIyiAZayy8I3jKzpwfMfRqXs8Q=
-----END PRIVATE KEY-----";
        let aws_lc_p256 = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUeR49svJ6uG8WN6h
jWyNUbB6N8qUzGArALWSF9JuIRChRANCAATd1OAhzzHY8zhSIqvom3kNGwJYFM0j
dQftGc/v2/Kym3HRSOCBiiwqaELdhL9Fm8/nwYms9eYrO7F4BUEZkCgT
-----END PRIVATE KEY-----";
        let openssl_ed25519 = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKIc3LDPh5vj44l9qtjReB8RO5AXbWzdQCd+IFIGJ2hq
-----END PRIVATE KEY-----";
        let openssl_p256 = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFqwn34TcUxbbfYzT
k5WzPNnsJe/FkPbkItHV7NLkvnKhRANCAATSyZBokMof5F4w43oFOS1PNo5eN8d+
+BW88NhrAjjK5OXRwHMkkwqWmL7DR6s8bxbMCjL+GcnHax1klcTujoRm
-----END PRIVATE KEY-----";
        for (pem, algorithm) in [
            (aws_lc_ed25519, KeyAlgorithm::Ed25519),
            (aws_lc_p256, KeyAlgorithm::EcdsaP256),
            (openssl_ed25519, KeyAlgorithm::Ed25519),
            (openssl_p256, KeyAlgorithm::EcdsaP256),
        ] {
            let key = SigningKey::from_pkcs8_pem(pem).unwrap();
            assert_eq!(key.algorithm(), algorithm);
        }
    }

    #[test]
    fn p256_jwk_members() {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let jwk = key.public_key().jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        assert_eq!([&[4u8][..], &x, &y].concat(), key.public_key().raw());
    }

    #[test]
    fn refuses_wrong_pem() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        // A private key where public keys are expected, and the other way round.
        assert!(PublicKey::from_pem(&key.to_pkcs8_pem()).is_err());
        assert!(SigningKey::from_pkcs8_pem(&key.public_key().to_pem()).is_err());
        assert!(PublicKey::from_pem("").is_err());
        assert!(PublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
        assert!(SigningKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(PublicKey::from_raw(KeyAlgorithm::Ed25519, &[0; 31]).is_err());
        assert!(PublicKey::from_raw(KeyAlgorithm::EcdsaP256, &[0; 65]).is_err());
        // Several keys in one file, in order.
        let other = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let both = format!(
            "{}{}",
            key.public_key().to_pem(),
            other.public_key().to_pem()
        );
        let kids: Vec<String> = PublicKey::from_pem(&both)
            .unwrap()
            .iter()
            .map(|k| k.kid().to_owned())
            .collect();
        assert_eq!(kids, [key.kid(), other.kid()]);
    }

    #[test]
    fn first_run_writes_0600_and_reloads_the_same_kid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("index");
        let key = load_or_generate(&dir, KeyAlgorithm::Ed25519).unwrap();
        let key_path = private_key_path(&dir);
        let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode & 0o077, 0, "{dir_mode:o}");
        let text = fs::read_to_string(&key_path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        let public = PublicKey::load(&public_key_path(&dir)).unwrap();
        assert_eq!(public[0].kid(), key.kid());
        // No temporary files left behind.
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Second run: same key, whatever algorithm is asked for now.
        let again = load_or_generate(&dir, KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.algorithm(), KeyAlgorithm::Ed25519);

        // A lost or stale public key is rewritten from the private one.
        fs::write(public_key_path(&dir), "junk").unwrap();
        load_or_generate(&dir, KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(
            PublicKey::load(&public_key_path(&dir)).unwrap()[0].kid(),
            key.kid()
        );
        fs::remove_file(public_key_path(&dir)).unwrap();
        load_or_generate(&dir, KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(
            PublicKey::load(&public_key_path(&dir)).unwrap()[0].kid(),
            key.kid()
        );
    }

    #[test]
    fn corrupt_private_key_is_an_error_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(private_key_path(tmp.path()), "not a key").unwrap();
        let err = load_or_generate(tmp.path(), KeyAlgorithm::Ed25519).unwrap_err();
        assert!(err.to_string().contains(PRIVATE_KEY_FILE), "{err}");
        assert_eq!(
            fs::read_to_string(private_key_path(tmp.path())).unwrap(),
            "not a key"
        );
    }

    #[test]
    fn p256_first_run() {
        let tmp = tempfile::tempdir().unwrap();
        let key = load_or_generate(tmp.path(), KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
        let again = load_or_generate(tmp.path(), KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(again.kid(), key.kid());
    }

    #[test]
    fn trusted_key_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let b = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pa = tmp.path().join("a.pem");
        let pb = tmp.path().join("b.pem");
        fs::write(&pa, a.public_key().to_pem()).unwrap();
        fs::write(
            &pb,
            format!("{}{}", b.public_key().to_pem(), a.public_key().to_pem()),
        )
        .unwrap();
        let keys = load_public_keys(&[pa, pb]).unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
        assert_eq!(kids, [a.kid(), b.kid()]);
        let doc = jwks(&keys);
        assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
        let missing = load_public_keys(&[tmp.path().join("nope.pem")]).unwrap_err();
        assert!(matches!(missing, KeyError::Io { .. }), "{missing}");
    }
}
