//! Reading stored manifests and image configs for display: the platforms of an image
//! index, an image's config and layers, what its config says about OS, architecture and
//! creation time. Pushers wrote these bytes, so nothing here trusts them: every field is
//! optional, strings are cut short, and the page escapes whatever is left.

use serde_json::Value;

/// Longest string shown from a manifest or config.
const MAX_TEXT: usize = 200;
/// Most entries listed from one manifest (layers or index entries).
const MAX_ENTRIES: usize = 1000;

/// One descriptor of a manifest (config, layer or index entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// `os/architecture[/variant]`, for an index entry that names one.
    pub platform: Option<String>,
}

/// What a manifest is, as far as the page needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An image manifest: its config and layers.
    Image {
        config: Option<Descriptor>,
        layers: Vec<Descriptor>,
    },
    /// An image index (manifest list): the manifests it lists.
    Index { manifests: Vec<Descriptor> },
    /// Not JSON, or a format this page does not describe.
    Other,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_TEXT).collect())
}

fn descriptor(v: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: text(v.get("mediaType")).unwrap_or_default(),
        digest: text(v.get("digest"))?,
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        platform: v.get("platform").and_then(platform),
    })
}

/// `os/architecture[/variant]` of an OCI platform object (or an image config, which has
/// the same fields).
fn platform(v: &Value) -> Option<String> {
    let os = text(v.get("os"))?;
    let arch = text(v.get("architecture"))?;
    Some(match text(v.get("variant")) {
        Some(variant) => format!("{os}/{arch}/{variant}"),
        None => format!("{os}/{arch}"),
    })
}

fn descriptors(v: Option<&Value>) -> Vec<Descriptor> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().take(MAX_ENTRIES).filter_map(descriptor).collect())
        .unwrap_or_default()
}

/// Parses manifest bytes.
pub fn parse(bytes: &[u8]) -> Parsed {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Parsed::Other;
    };
    if v.get("manifests").is_some_and(Value::is_array) {
        return Parsed::Index {
            manifests: descriptors(v.get("manifests")),
        };
    }
    if v.get("config").is_some() || v.get("layers").is_some() {
        return Parsed::Image {
            config: v.get("config").and_then(descriptor),
            layers: descriptors(v.get("layers")),
        };
    }
    Parsed::Other
}

/// The distinct platforms an image index lists, in its order. Entries without one, and
/// the `unknown/unknown` entries build tools add for attestations, are left out.
pub fn platforms(bytes: &[u8]) -> Vec<String> {
    let Parsed::Index { manifests } = parse(bytes) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for p in manifests.into_iter().filter_map(|m| m.platform) {
        if p != "unknown/unknown" && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// What an image config says: its platform and creation time (as written).
pub fn config_facts(bytes: &[u8]) -> Option<(Option<String>, Option<String>)> {
    let v = serde_json::from_slice::<Value>(bytes).ok()?;
    v.is_object()
        .then(|| (platform(&v), text(v.get("created"))))
}

/// Whether `media_type` names an image index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images() {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:aa", "size": 7},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:bb", "size": 100},
                {"digest": "sha256:cc"},
                {"mediaType": "no digest"}
            ]
        });
        let Parsed::Image { config, layers } = parse(m.to_string().as_bytes()) else {
            panic!("not an image");
        };
        assert_eq!(config.unwrap().size, 7);
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1].media_type, "");
        assert!(platforms(m.to_string().as_bytes()).is_empty());
    }

    #[test]
    fn indexes() {
        let m = json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "m", "digest": "sha256:01", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "m", "digest": "sha256:02", "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "m", "digest": "sha256:03", "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": "m", "digest": "sha256:04", "size": 1},
                {"mediaType": "m", "digest": "sha256:05", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}
            ]
        });
        let bytes = m.to_string();
        assert_eq!(
            platforms(bytes.as_bytes()),
            ["linux/amd64", "linux/arm64/v8"]
        );
        let Parsed::Index { manifests } = parse(bytes.as_bytes()) else {
            panic!("not an index");
        };
        assert_eq!(manifests.len(), 5);
        assert_eq!(manifests[3].platform, None);
    }

    #[test]
    fn hostile_or_odd_input() {
        assert_eq!(parse(b"not json"), Parsed::Other);
        assert_eq!(parse(b"[]"), Parsed::Other);
        assert_eq!(parse(br#"{"schemaVersion":1}"#), Parsed::Other);
        let long = "x".repeat(10_000);
        let m = json!({"layers": [{"digest": long, "mediaType": 5}]});
        let Parsed::Image { layers, .. } = parse(m.to_string().as_bytes()) else {
            panic!("not an image");
        };
        assert_eq!(layers[0].digest.len(), MAX_TEXT);
        assert_eq!(
            config_facts(
                br#"{"os":"linux","architecture":"amd64","created":"2026-01-01T00:00:00Z"}"#
            ),
            Some((
                Some("linux/amd64".into()),
                Some("2026-01-01T00:00:00Z".into())
            ))
        );
        assert_eq!(config_facts(b"1"), None);
    }
}
