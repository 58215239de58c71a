//! Content negotiation for manifests: reading `Accept` whether clients send it as several
//! header lines or as one comma-joined line, and deciding whether a stored manifest's media
//! type is one the client can take.

use http::header::ACCEPT;
use http::HeaderMap;

/// Every media range in every `Accept` line, lowercased, parameters (`;q=…`) dropped.
pub fn accepted_types(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|item| {
            item.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a manifest of `media_type` may be returned to a client that accepts `accepted`.
///
/// No `Accept` at all, a wildcard, or an `Accept` that names no manifest types (say only
/// `application/json`) take anything: only a client that lists manifest types and leaves
/// this one out is refused, so it can fall back rather than misparse.
pub fn manifest_acceptable(accepted: &[String], media_type: &str) -> bool {
    let media_type = media_type.to_ascii_lowercase();
    let names_manifests = accepted
        .iter()
        .any(|t| t.contains("manifest") || t.contains("image.index"));
    if !names_manifests {
        return true;
    }
    accepted.iter().any(|t| {
        t == "*/*"
            || t == &media_type
            || t.strip_suffix("/*")
                .is_some_and(|prefix| media_type.starts_with(&format!("{prefix}/")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";

    #[test]
    fn several_lines_and_comma_joined_are_the_same() {
        let mut lines = HeaderMap::new();
        lines.append(ACCEPT, HeaderValue::from_static(OCI));
        lines.append(ACCEPT, HeaderValue::from_static(DOCKER));
        let mut joined = HeaderMap::new();
        joined.insert(
            ACCEPT,
            HeaderValue::from_str(&format!("{OCI}, {DOCKER};q=0.9")).unwrap(),
        );
        assert_eq!(accepted_types(&lines), accepted_types(&joined));
        assert_eq!(
            accepted_types(&lines),
            vec![OCI.to_string(), DOCKER.to_string()]
        );
    }

    #[test]
    fn acceptability() {
        let a = vec![OCI.to_string(), DOCKER.to_string()];
        assert!(manifest_acceptable(&a, OCI));
        assert!(manifest_acceptable(&a, DOCKER));
        assert!(!manifest_acceptable(&a, INDEX));
        assert!(manifest_acceptable(&[], INDEX));
        assert!(manifest_acceptable(&["application/json".into()], INDEX));
        let wild = vec![OCI.to_string(), "*/*".to_string()];
        assert!(manifest_acceptable(&wild, INDEX));
        let app = vec![OCI.to_string(), "application/*".to_string()];
        assert!(manifest_acceptable(&app, INDEX));
    }
}
