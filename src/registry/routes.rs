//! Which Distribution API endpoint a `/v2/…` path names. Repository names contain `/`, so a
//! path is matched from its end (`…/manifests/<ref>`, `…/blobs/uploads/<id>`), and the rest
//! is the name; grammar checks happen when the handler parses the pieces.

/// An endpoint and the raw (still unvalidated) pieces of its path.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Base,
    Catalog,
    Tags { name: &'a str },
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    UploadStart { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

/// Matches a decoded request path. `None` for paths outside the API.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    // Try the endpoint suffixes from the most specific down.
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart { name });
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags { name });
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload { name, id: last });
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest {
            name,
            reference: last,
        }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            route("/v2/a/b/tags/list"),
            Some(Route::Tags { name: "a/b" })
        );
        assert_eq!(
            route("/v2/a/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/b",
                reference: "latest"
            })
        );
        assert_eq!(
            route("/v2/x/blobs/sha256:00"),
            Some(Route::Blob {
                name: "x",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            route("/v2/x/blobs/uploads/"),
            Some(Route::UploadStart { name: "x" })
        );
        assert_eq!(
            route("/v2/x/blobs/uploads"),
            Some(Route::UploadStart { name: "x" })
        );
        assert_eq!(
            route("/v2/x/y/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "x/y",
                id: "abc"
            })
        );
        assert_eq!(
            route("/v2/x/referrers/sha256:00"),
            Some(Route::Referrers {
                name: "x",
                digest: "sha256:00"
            })
        );
        // Names may contain the keywords as components.
        assert_eq!(
            route("/v2/blobs/manifests/manifests/v1"),
            Some(Route::Manifest {
                name: "blobs/manifests",
                reference: "v1"
            })
        );
        assert_eq!(route("/v3/x"), None);
        assert_eq!(route("/v2/x"), None);
        assert_eq!(route("/v2/x/other/y"), None);
        assert_eq!(route("/v2x/"), None);
    }
}
