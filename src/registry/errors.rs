//! The one place failures become the Distribution spec's error codes, HTTP statuses and
//! JSON bodies (`{"errors":[{"code","message","detail"}]}`). Handlers return
//! `RegistryError`; storage errors are translated here or by the handler that knows what
//! was not found.

use http::StatusCode;
use serde_json::json;

use crate::registry::names::NameError;
use crate::storage::StorageError;

/// The spec's error codes (plus `UNKNOWN` for server faults, as distribution uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    PaginationNumberInvalid,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// A failure to report to the client.
#[derive(Debug)]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Extra response headers (e.g. `Range` on 416, `Retry-After` on 429).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl RegistryError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        RegistryError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: http::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn blob_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::BlobUnknown,
            "blob unknown to registry",
        )
    }
    pub fn upload_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }
    pub fn manifest_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            "manifest unknown to registry",
        )
    }
    pub fn name_unknown() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            "repository name not known to registry",
        )
    }
    pub fn manifest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::ManifestInvalid, message)
    }
    pub fn digest_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::DigestInvalid, message)
    }
    pub fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, Code::Unsupported, message)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unknown,
            "internal server error",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self) -> String {
        let mut e = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = &self.detail {
            e["detail"] = d.clone();
        }
        json!({ "errors": [e] }).to_string()
    }
}

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Name => Self::new(
                StatusCode::BAD_REQUEST,
                Code::NameInvalid,
                "invalid repository name",
            ),
            NameError::Tag => Self::new(StatusCode::BAD_REQUEST, Code::TagInvalid, "invalid tag"),
            NameError::Digest => Self::digest_invalid("invalid digest"),
            NameError::UnsupportedAlgorithm => {
                Self::digest_invalid("unsupported digest algorithm (sha256 and sha512 are)")
            }
        }
    }
}

/// Storage failures with no more specific meaning in the handler's context. `NotFound` is
/// mapped by handlers (which know *what* was not found); here it is a blob.
impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => Self::blob_unknown(),
            StorageError::DigestMismatch { expected, computed } => {
                Self::digest_invalid("provided digest did not match uploaded content").with_detail(
                    json!({ "expected": expected.to_string(), "computed": computed.to_string() }),
                )
            }
            StorageError::OffsetMismatch { expected, got } => {
                let end = expected.saturating_sub(1);
                Self::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Code::BlobUploadInvalid,
                    format!("chunk must start at offset {expected}, not {got}"),
                )
                .with_header(http::header::RANGE, format!("0-{end}"))
            }
            StorageError::RangeNotSatisfiable { size } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BlobUnknown,
                "requested range not satisfiable",
            )
            .with_header(http::header::CONTENT_RANGE, format!("bytes */{size}")),
            StorageError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::SizeInvalid,
                format!("content exceeds the limit of {limit} bytes"),
            ),
            StorageError::Body(msg) => Self::new(
                StatusCode::BAD_REQUEST,
                Code::BlobUploadInvalid,
                "request body ended before it was complete",
            )
            .with_detail(json!({ "reason": msg })),
            StorageError::Io(err)
                if err.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) =>
            {
                tracing::error!(error = %err, "storage is full");
                insufficient_storage()
            }
            StorageError::Io(err) => {
                tracing::error!(error = %err, "storage I/O error");
                Self::internal()
            }
        }
    }
}

/// The disk is (nearly) full: nothing was stored; reads still work.
pub fn insufficient_storage() -> RegistryError {
    RegistryError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        Code::Denied,
        "the registry is out of disk space; uploads are refused until space is freed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_spec_json() {
        let e = RegistryError::from(NameError::Name);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_INVALID");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn io_errors_do_not_leak_details() {
        let e = RegistryError::from(StorageError::Io(std::io::Error::other("/secret/path")));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body().contains("secret"));
    }
}
