//! What a manifest says about itself: its media type (reconciled with the `Content-Type` a
//! client sent), the blobs and child manifests it references, its `subject`, and the
//! descriptor it contributes to the referrers API. Only the fields the registry needs are
//! read; the stored bytes are always exactly the bytes the client pushed.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::registry::errors::{Code, RegistryError};
use crate::registry::names::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Layer media types that are, by design, fetched from elsewhere (`urls`) and so need not
/// be in the repository.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An image manifest (config + layers), Docker or OCI.
    Image,
    /// A list of manifests (Docker manifest list or OCI index).
    Index,
}

/// The facts the registry needs from a manifest.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    pub media_type: String,
    pub kind: Kind,
    /// Config and layer blobs that must be present in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must be present in the repository.
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type (the
    /// referrers API reports that).
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Value>,
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::manifest_invalid(msg)
}

/// The media type part of a `Content-Type` value (`; charset=…` and case dropped).
pub fn base_media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn kind_of(media_type: &str) -> Option<Kind> {
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => Some(Kind::Image),
        DOCKER_LIST | OCI_INDEX => Some(Kind::Index),
        _ => None,
    }
}

fn descriptor_digest(d: &RawDescriptor, field: &str) -> Result<Digest, RegistryError> {
    if d.size < 0 {
        return Err(invalid(format!("{field}: negative size")));
    }
    Digest::parse(&d.digest).map_err(|_| {
        invalid(format!("{field}: invalid digest")).with_detail(json!({ "digest": d.digest }))
    })
}

/// Parses a manifest pushed with `content_type` (the request header, if any).
pub fn parse_pushed(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<ManifestInfo, RegistryError> {
    let header_type = content_type
        .map(base_media_type)
        .filter(|t| kind_of(t).is_some());
    parse(body, header_type.as_deref(), true)
}

/// Parses a manifest already stored (it was validated when pushed).
pub fn parse_stored(body: &[u8]) -> Result<ManifestInfo, RegistryError> {
    parse(body, None, false)
}

fn parse(
    body: &[u8],
    header_type: Option<&str>,
    strict: bool,
) -> Result<ManifestInfo, RegistryError> {
    let raw: RawManifest = serde_json::from_slice(body).map_err(|e| {
        invalid("manifest is not valid JSON of a known shape")
            .with_detail(json!({ "reason": e.to_string() }))
    })?;
    if strict && raw.schema_version != Some(2) {
        if raw.schema_version == Some(1) {
            return Err(RegistryError::new(
                http::StatusCode::BAD_REQUEST,
                Code::ManifestInvalid,
                "Docker schema 1 manifests are not supported",
            ));
        }
        return Err(invalid("schemaVersion must be 2"));
    }
    let body_type = raw.media_type.as_deref().map(base_media_type);
    if let (Some(b), Some(h)) = (body_type.as_deref(), header_type) {
        if b != h {
            return Err(invalid("mediaType in the body does not match Content-Type")
                .with_detail(json!({ "mediaType": b, "contentType": h })));
        }
    }
    let media_type = match (body_type, header_type) {
        (Some(b), _) => b,
        (None, Some(h)) => h.to_owned(),
        // Neither says: an OCI document is recognised by its shape.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
        return Err(invalid("Docker schema 1 manifests are not supported"));
    }
    let kind = kind_of(&media_type)
        .ok_or_else(|| invalid(format!("unsupported manifest media type {media_type:?}")))?;

    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut config_type = None;
    match kind {
        Kind::Image => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("image manifest without config"))?;
            blobs.push(descriptor_digest(config, "config")?);
            config_type = config.media_type.clone();
            for layer in raw.layers.as_deref().unwrap_or_default() {
                let d = descriptor_digest(layer, "layers")?;
                let foreign = layer
                    .media_type
                    .as_deref()
                    .is_some_and(|t| FOREIGN_LAYERS.contains(&t))
                    && layer.urls.as_ref().is_some_and(|u| !u.is_empty());
                if !foreign {
                    blobs.push(d);
                }
            }
            if strict && raw.manifests.is_some() {
                return Err(invalid("image manifest must not have `manifests`"));
            }
        }
        Kind::Index => {
            let list = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("index without manifests"))?;
            for m in list {
                manifests.push(descriptor_digest(m, "manifests")?);
            }
            if strict && (raw.config.is_some() || raw.layers.is_some()) {
                return Err(invalid("index must not have `config` or `layers`"));
            }
        }
    }
    let subject = raw
        .subject
        .as_ref()
        .map(|s| descriptor_digest(s, "subject"))
        .transpose()?;
    let artifact_type = raw.artifact_type.clone().or(match kind {
        Kind::Image => config_type,
        Kind::Index => None,
    });
    Ok(ManifestInfo {
        media_type,
        kind,
        blobs,
        manifests,
        subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

impl ManifestInfo {
    /// The descriptor of this manifest as a referrer (an entry of the referrers index).
    pub fn referrer_descriptor(&self, digest: &Digest, size: u64) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": digest.to_string(),
            "size": size,
        });
        if let Some(t) = &self.artifact_type {
            d["artifactType"] = json!(t);
        }
        if let Some(a) = &self.annotations {
            if a.as_object().is_some_and(|o| !o.is_empty()) {
                d["annotations"] = a.clone();
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn oci_manifest(media_type: Option<&str>) -> Vec<u8> {
        let mut m = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('a'), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d('b'), "size": 3}],
        });
        if let Some(t) = media_type {
            m["mediaType"] = json!(t);
        }
        m.to_string().into_bytes()
    }

    #[test]
    fn media_type_reconciliation() {
        let body = oci_manifest(Some(OCI_MANIFEST));
        assert_eq!(
            parse_pushed(&body, Some(OCI_MANIFEST)).unwrap().media_type,
            OCI_MANIFEST
        );
        let e = parse_pushed(&body, Some(DOCKER_MANIFEST)).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        // podman omits mediaType: the header decides.
        let bare = oci_manifest(None);
        assert_eq!(
            parse_pushed(&bare, Some(OCI_MANIFEST)).unwrap().media_type,
            OCI_MANIFEST
        );
        assert_eq!(
            parse_pushed(
                &bare,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .unwrap()
            .media_type,
            OCI_MANIFEST
        );
        assert_eq!(parse_pushed(&bare, None).unwrap().media_type, OCI_MANIFEST);
    }

    #[test]
    fn references_and_subject() {
        let mut m: Value = serde_json::from_slice(&oci_manifest(Some(OCI_MANIFEST))).unwrap();
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d('c'), "size": 9});
        m["artifactType"] = json!("application/vnd.example.sbom");
        let info = parse_pushed(m.to_string().as_bytes(), None).unwrap();
        assert_eq!(info.blobs.len(), 2);
        assert_eq!(info.subject.unwrap().to_string(), d('c'));
        assert_eq!(
            info.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
    }

    #[test]
    fn index_children() {
        let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 1},
        ]});
        let info = parse_pushed(idx.to_string().as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(info.kind, Kind::Index);
        assert_eq!(info.manifests.len(), 2);
        assert!(info.blobs.is_empty());
    }

    #[test]
    fn bad_manifests() {
        assert!(parse_pushed(b"not json", None).is_err());
        assert!(parse_pushed(br#"{"schemaVersion":1,"name":"x"}"#, None).is_err());
        let bad_digest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"digest": "sha256:xyz", "size": 1}, "layers": []});
        assert!(parse_pushed(bad_digest.to_string().as_bytes(), None).is_err());
        let unknown = json!({"schemaVersion": 2, "mediaType": "text/plain"});
        assert!(parse_pushed(unknown.to_string().as_bytes(), None).is_err());
    }
}
