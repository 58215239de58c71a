//! `GET /v2/<name>/referrers/<digest>`: the manifests whose `subject` is that digest, as an
//! OCI image index, optionally filtered by `artifactType`.

use http::StatusCode;
use serde_json::{json, Value};

use crate::registry::manifest_format::OCI_INDEX;
use crate::registry::names::{Digest, RepoName};
use crate::registry::{header, HandlerResult, Registry, Reply, Request};
use crate::storage::Storage;

/// An index listing no referrers.
pub fn empty_index() -> Reply {
    index_reply(Vec::new(), false)
}

fn index_reply(manifests: Vec<Value>, filtered: bool) -> Reply {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let reply = Reply::new(StatusCode::OK).bytes(OCI_INDEX, bytes::Bytes::from(index.to_string()));
    if filtered {
        reply.header(header::OCI_FILTERS_APPLIED, "artifactType")
    } else {
        reply
    }
}

pub async fn list<S: Storage>(
    reg: &Registry<S>,
    name: &str,
    digest: &str,
    req: &Request,
) -> HandlerResult {
    let repo = RepoName::parse(name)?;
    let subject = Digest::parse(digest)?;
    let filter = req.query("artifactType").filter(|t| !t.is_empty());
    let records = reg.storage.referrers(&repo, &subject).await?;
    let manifests: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.descriptor_json).ok())
        .filter(|d| filter.is_none_or(|f| d["artifactType"].as_str() == Some(f)))
        .collect();
    Ok(index_reply(manifests, filter.is_some()))
}
