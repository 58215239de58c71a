//! The grammar of the Distribution API's identifiers: repository names, tags, digests and
//! the `<reference>` that is either of the last two. Parsing here is the only place these
//! strings are trusted; every other module takes the validated types.

use std::fmt;

/// Longest repository name the spec allows (the whole name, all components).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name")]
    Name,
    #[error("invalid tag")]
    Tag,
    #[error("invalid digest")]
    Digest,
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
}

/// A repository name: `component(/component)*`, each component
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 characters in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(NameError::Name);
        }
        if s.split('/').all(valid_component) {
            Ok(RepoName(s.to_owned()))
        } else {
            Err(NameError::Name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: alphanumeric runs joined by exactly one of `.`, `_`, `__` or `-+`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run, which must be followed by an alphanumeric (guaranteed at the end
        // by the last-character check above).
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > MAX_TAG_LEN {
            return Err(NameError::Tag);
        }
        let first_ok = b[0].is_ascii_alphanumeric() || b[0] == b'_';
        let rest_ok = b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-');
        if first_ok && rest_ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest `algorithm:hex`. Only registered algorithms with lowercase hex of the
/// right length are accepted, so a digest is always safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `algorithm:encoded`. A syntactically valid digest with an algorithm we do not
    /// implement is `UnsupportedAlgorithm` (the spec still calls that `DIGEST_INVALID`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (alg, hex) = s.split_once(':').ok_or(NameError::Digest)?;
        // algorithm grammar: [a-z0-9]+([+._-][a-z0-9]+)*
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !alg_ok || hex.is_empty() {
            return Err(NameError::Digest);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(NameError::UnsupportedAlgorithm),
        };
        let hex_ok = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(NameError::Digest);
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Builds a digest from raw hash output.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        Digest {
            algorithm,
            hex: hex::encode(raw),
        }
    }

    /// The digest of `data` under `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Self::from_raw(algorithm, &sha2::Sha256::digest(data)),
            Algorithm::Sha512 => Self::from_raw(algorithm, &sha2::Sha512::digest(data)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` can only be a digest; anything else must be a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "a",
            "library/busybox",
            "a/b/c/d",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo-bar",
            "foo---bar",
            "0x/1.2/a-b__c",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "A",
            "Foo/bar",
            "/a",
            "a/",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a_.b",
            "_a",
            "a/_layers",
            "a b",
            "a/../b",
            "..",
            "a:b",
            "é",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} should be invalid");
        }
        let long = "a".repeat(255);
        assert!(RepoName::parse(&long).is_ok());
        let too_long = "a".repeat(256);
        assert_eq!(RepoName::parse(&too_long), Err(NameError::Name));
        let long_path = format!("{}/{}", "a".repeat(127), "b".repeat(128));
        assert!(RepoName::parse(&long_path).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129), "ü"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn digests() {
        let hex256 = "a".repeat(64);
        let d = Digest::parse(&format!("sha256:{hex256}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), format!("sha256:{hex256}"));
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert_eq!(
            Digest::parse(&format!("sha256:{}", "A".repeat(64))),
            Err(NameError::Digest)
        );
        assert_eq!(
            Digest::parse(&format!("sha256:{}", "a".repeat(63))),
            Err(NameError::Digest)
        );
        assert_eq!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(NameError::UnsupportedAlgorithm)
        );
        assert_eq!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"),
            Err(NameError::UnsupportedAlgorithm)
        );
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:aa",
            "sha256:../../etc",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} should be invalid");
        }
        let empty = Digest::of(Algorithm::Sha256, b"");
        assert_eq!(
            empty.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:short").is_err());
        assert!(Reference::parse("../x").is_err());
    }
}
