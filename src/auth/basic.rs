//! Parsing of `Authorization: Basic base64(user:password)` (RFC 7617). Only this file
//! looks inside the header; the result never appears in logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::AuthError;

/// Longest encoded credential accepted; far above any real user name plus password, and
/// small enough that decoding it costs nothing.
const MAX_ENCODED_LEN: usize = 4096;

/// `Ok(Some((user, password)))` for a Basic header, `Ok(None)` for another scheme (e.g.
/// `Bearer`, which the standalone registry does not accept), `Err(Malformed)` for a Basic
/// header whose payload is not base64 of UTF-8 `user:password`. The scheme is matched
/// case-insensitively; the password may contain `:` (only the first one separates).
pub fn parse_basic(header: &str) -> Result<Option<(String, String)>, AuthError> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once([' ', '\t']) {
        Some((scheme, rest)) => (scheme, rest.trim()),
        None => (header, ""),
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    if rest.is_empty() || rest.len() > MAX_ENCODED_LEN {
        return Err(AuthError::Malformed);
    }
    let decoded = STANDARD.decode(rest).map_err(|_| AuthError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
    Ok(Some((user.to_owned(), password.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn parses_basic() {
        let h = format!("Basic {}", b64(b"alice:s3cret"));
        assert_eq!(
            parse_basic(&h),
            Ok(Some(("alice".to_owned(), "s3cret".to_owned())))
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_whitespace_tolerant() {
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let h = format!("  {scheme}   {}  ", b64(b"u:p"));
            assert_eq!(parse_basic(&h), Ok(Some(("u".into(), "p".into()))));
        }
    }

    #[test]
    fn password_may_contain_colons_and_be_empty() {
        let h = format!("Basic {}", b64(b"u:a:b::c"));
        assert_eq!(parse_basic(&h), Ok(Some(("u".into(), "a:b::c".into()))));
        let h = format!("Basic {}", b64(b"u:"));
        assert_eq!(parse_basic(&h), Ok(Some(("u".into(), "".into()))));
        let h = format!("Basic {}", b64("ü:pässwörd".as_bytes()));
        assert_eq!(parse_basic(&h), Ok(Some(("ü".into(), "pässwörd".into()))));
    }

    #[test]
    fn other_schemes_are_not_basic() {
        assert_eq!(parse_basic("Bearer abc.def.ghi"), Ok(None));
        assert_eq!(parse_basic("Basicx abc"), Ok(None));
        assert_eq!(parse_basic(""), Ok(None));
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_basic("Basic"), Err(AuthError::Malformed));
        assert_eq!(parse_basic("Basic "), Err(AuthError::Malformed));
        assert_eq!(
            parse_basic("Basic !!!not-base64"),
            Err(AuthError::Malformed)
        );
        // Valid base64, no colon.
        let h = format!("Basic {}", b64(b"nocolon"));
        assert_eq!(parse_basic(&h), Err(AuthError::Malformed));
        // Valid base64, not UTF-8.
        let h = format!("Basic {}", b64(&[0xff, 0xfe, b':', b'x']));
        assert_eq!(parse_basic(&h), Err(AuthError::Malformed));
        let h = format!("Basic {}", "QUFB".repeat(2000));
        assert_eq!(parse_basic(&h), Err(AuthError::Malformed));
    }
}
