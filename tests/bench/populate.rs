//! Many repositories and tags, fast. One seed image is pushed through the API to each
//! server; with the servers stopped, the seed repository's folder is then replicated on disk
//! (`N` repositories) and its `latest` tag entry copied (`T` tags), byte for byte as each
//! server wrote them — so the harness needs no knowledge of either on-disk format beyond
//! where repository folders live. After a restart, every catalog and tag page is read back
//! through the API and compared with what was written, so both servers are known to answer
//! correctly before anything is measured.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::api::{link_next, Api, ApiResult, Image, MANIFEST_ACCEPT};
use crate::data::Synth;
use crate::servers::Server;

pub const SEED_REPO: &str = "bench/seed";
pub const TAGS_REPO: &str = "bench/tags";
pub const PAGE: usize = 100;

pub fn repo_name(i: usize) -> String {
    format!("bench/repo-{i:05}")
}

pub fn tag_name(j: usize) -> String {
    format!("t-{j:05}")
}

/// What was stored, for checking and for choosing request paths.
pub struct Population {
    pub repos: usize,
    pub manifest_digest: String,
    /// Every repository name, sorted (as a catalog lists them).
    pub catalog: Vec<String>,
    /// Every tag of `TAGS_REPO`, sorted.
    pub tag_list: Vec<String>,
}

impl Population {
    pub fn new(repos: usize, tags: usize, manifest_digest: String) -> Population {
        let mut catalog: Vec<String> = (0..repos).map(repo_name).collect();
        catalog.push(SEED_REPO.to_owned());
        catalog.push(TAGS_REPO.to_owned());
        catalog.sort();
        let mut tag_list: Vec<String> = (0..tags).map(tag_name).collect();
        tag_list.push("latest".to_owned());
        tag_list.sort();
        Population {
            repos,
            manifest_digest,
            catalog,
            tag_list,
        }
    }

    /// The repository whose manifest the manifest-GET workload asks for.
    pub fn hot_repo(&self) -> String {
        repo_name(self.repos / 2)
    }

    /// Catalog page URLs (`n=100`, with `last=` at every page start), at most `max`.
    pub fn catalog_pages(&self, max: usize) -> Vec<String> {
        page_paths("/v2/_catalog", &self.catalog, max)
    }

    pub fn tag_pages(&self, max: usize) -> Vec<String> {
        page_paths(&format!("/v2/{TAGS_REPO}/tags/list"), &self.tag_list, max)
    }
}

fn page_paths(base: &str, items: &[String], max: usize) -> Vec<String> {
    let pages = items.len().div_ceil(PAGE).min(max).max(1);
    (0..pages)
        .map(|k| {
            if k == 0 {
                format!("{base}?n={PAGE}")
            } else {
                format!("{base}?n={PAGE}&last={}", items[k * PAGE - 1])
            }
        })
        .collect()
}

/// The seed image (config + one small layer), the same bytes for both servers.
pub fn seed_image(pool: &Bytes) -> Image {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"bench": "seed"}},
    }))
    .unwrap();
    Image::new(config, vec![Synth::new(pool, "seed layer", 4096)])
}

/// Pushes the seed image to `SEED_REPO:latest` and `TAGS_REPO:latest`.
pub async fn push_seed(api: &Api, image: &Image) -> ApiResult<()> {
    image.push(api, SEED_REPO, "latest").await?;
    image.push(api, TAGS_REPO, "latest").await
}

/// A snapshot of a folder (or a single file): relative paths of its folders and files, with
/// the files' bytes.
struct Tree {
    dirs: Vec<PathBuf>,
    files: Vec<(PathBuf, Vec<u8>)>,
}

fn snapshot(root: &Path) -> io::Result<Tree> {
    let mut t = Tree {
        dirs: Vec::new(),
        files: Vec::new(),
    };
    if fs::symlink_metadata(root)?.is_file() {
        t.files.push((PathBuf::new(), fs::read(root)?));
        return Ok(t);
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        t.dirs.push(rel.clone());
        for e in fs::read_dir(root.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                stack.push(r);
            } else {
                t.files.push((r.clone(), fs::read(root.join(&r))?));
            }
        }
    }
    t.dirs.sort();
    Ok(t)
}

impl Tree {
    /// Writes the snapshot at `dest`; returns how many files it wrote.
    fn replay(&self, dest: &Path) -> io::Result<u64> {
        for d in &self.dirs {
            fs::create_dir_all(dest.join(d))?;
        }
        for (rel, data) in &self.files {
            let p = if rel.as_os_str().is_empty() {
                dest.to_path_buf()
            } else {
                dest.join(rel)
            };
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(p, data)?;
        }
        Ok(self.files.len() as u64)
    }
}

/// Replicates the seed repository `repos` times and the `latest` tag of `TAGS_REPO` `tags`
/// times, in the server's own format. The server must be stopped. Returns files written.
pub fn replicate(server: &Server, repos: usize, tags: usize) -> io::Result<u64> {
    let seed = snapshot(&server.repos_dir.join(SEED_REPO))?;
    let mut files = 0;
    for i in 0..repos {
        files += seed.replay(&server.repos_dir.join(repo_name(i)))?;
    }
    let tags_dir = server.repos_dir.join(TAGS_REPO).join("_manifests/tags");
    let latest = snapshot(&tags_dir.join("latest"))?;
    for j in 0..tags {
        files += latest.replay(&tags_dir.join(tag_name(j)))?;
    }
    Ok(files)
}

/// Reads every catalog page, every tag page and a few manifests back through the API and
/// compares them with `pop`. Returns notes on how the server paginates.
pub async fn verify(server: &Server, api: &Api, pop: &Population) -> ApiResult<Vec<String>> {
    let mut notes = Vec::new();
    let who = server.kind;
    let names = read_pages(
        api,
        &format!("/v2/_catalog?n={PAGE}"),
        "repositories",
        pop.catalog.len(),
    )
    .await?;
    if names.items != pop.catalog {
        return Err(format!(
            "{who}: catalog lists {} names (first {:?}), expected {} (first {:?})",
            names.items.len(),
            names.items.first(),
            pop.catalog.len(),
            pop.catalog.first()
        ));
    }
    if names.max_page > PAGE {
        notes.push(format!(
            "{who}: _catalog?n={PAGE} answered pages of up to {} names",
            names.max_page
        ));
    }
    let tags = read_pages(
        api,
        &format!("/v2/{TAGS_REPO}/tags/list?n={PAGE}"),
        "tags",
        pop.tag_list.len(),
    )
    .await?;
    let mut got = tags.items.clone();
    got.sort();
    if got != pop.tag_list {
        return Err(format!(
            "{who}: {TAGS_REPO} lists {} tags, expected {}",
            got.len(),
            pop.tag_list.len()
        ));
    }
    if tags.max_page > PAGE {
        notes.push(format!(
            "{who}: tags/list?n={PAGE} ignores `n`: it answered all {} tags in one response \
             ({} bytes)",
            tags.max_page, tags.max_bytes
        ));
    }
    let mut probe = vec![0, pop.repos / 2, pop.repos.saturating_sub(1)];
    probe.dedup();
    for i in probe.into_iter().filter(|&i| i < pop.repos) {
        let path = format!("/v2/{}/manifests/latest", repo_name(i));
        let r = api.get(&path, Some(MANIFEST_ACCEPT), 200).await?;
        let d = crate::api::header(&r, "docker-content-digest");
        let _ = r.bytes().await;
        if d.as_deref() != Some(pop.manifest_digest.as_str()) {
            return Err(format!("{who}: GET {path}: Docker-Content-Digest {d:?}"));
        }
    }
    Ok(notes)
}

struct Pages {
    items: Vec<String>,
    max_page: usize,
    max_bytes: usize,
}

/// Follows `Link: rel="next"` from `first`, collecting the `key` array of every page.
async fn read_pages(api: &Api, first: &str, key: &str, expected: usize) -> ApiResult<Pages> {
    let mut out = Pages {
        items: Vec::new(),
        max_page: 0,
        max_bytes: 0,
    };
    let mut next = Some(first.to_owned());
    let max_requests = expected / PAGE + 5;
    let mut requests = 0;
    while let Some(path) = next.take() {
        requests += 1;
        if requests > max_requests {
            return Err(format!("{first}: more than {max_requests} pages"));
        }
        let r = api.get(&path, None, 200).await?;
        next = link_next(&r).map(|l| match reqwest::Url::parse(&l) {
            // An absolute URL: keep the path and query.
            Ok(u) => format!("{}?{}", u.path(), u.query().unwrap_or("")),
            Err(_) => l,
        });
        let body = r.bytes().await.map_err(|e| format!("GET {path}: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("GET {path}: not JSON ({e})"))?;
        let page: Vec<String> = v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.max_page = out.max_page.max(page.len());
        out.max_bytes = out.max_bytes.max(body.len());
        if page.is_empty() {
            break;
        }
        out.items.extend(page);
    }
    Ok(out)
}
