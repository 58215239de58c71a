//! Test images made offline: tar layers written by hand around the busybox-static binary,
//! gzip-compressed with `gzip -n` (deterministic), an image config, an OCI manifest, and
//! writers for an OCI image layout (`oci:` transport of skopeo/podman) and a docker-archive
//! (`docker load`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::common::{digest_of, sha256_hex};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A fixed modification time for every tar entry, so layers are reproducible.
const MTIME: u64 = 1_700_000_000;

/// A ustar archive written by hand.
#[derive(Default)]
pub struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, typeflag: u8, link: &str) {
        assert!(path.len() < 100 && link.len() < 100, "tar path too long");
        let mut h = [0u8; 512];
        fn put(h: &mut [u8], at: usize, s: &[u8]) {
            h[at..at + s.len()].copy_from_slice(s);
        }
        put(&mut h, 0, path.as_bytes());
        put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
        put(&mut h, 108, b"0000000\0");
        put(&mut h, 116, b"0000000\0");
        put(&mut h, 124, format!("{size:011o}\0").as_bytes());
        put(&mut h, 136, format!("{MTIME:011o}\0").as_bytes());
        put(&mut h, 148, b"        ");
        h[156] = typeflag;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        put(&mut h, 265, b"root");
        put(&mut h, 297, b"root");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn dir(&mut self, path: &str) -> &mut Tar {
        self.header(
            &format!("{}/", path.trim_end_matches('/')),
            0o755,
            0,
            b'5',
            "",
        );
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Tar {
        self.header(path, mode, data.len() as u64, b'0', "");
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.header(path, 0o777, 0, b'2', target);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.buf);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// `gzip -n -6`: no name or time stamp in the header, so the same input always gives the
/// same bytes (and digest).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, data).unwrap();
    let out = Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .stdin(Stdio::from(std::fs::File::open(f.path()).unwrap()))
        .stderr(Stdio::inherit())
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// A content-addressed blob with its media type.
#[derive(Clone)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            bytes,
        }
    }

    pub fn digest(&self) -> String {
        digest_of(&self.bytes)
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }
}

/// One filesystem layer: the plain tar (its digest is the diff ID) and its gzip form (what
/// the manifest names and the registry stores).
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gz: Blob,
}

impl Layer {
    pub fn new(tar: Vec<u8>) -> Layer {
        let gz = Blob::new(OCI_LAYER_GZIP, gzip(&tar));
        Layer { tar, gz }
    }

    pub fn diff_id(&self) -> String {
        digest_of(&self.tar)
    }
}

/// The busybox layer, built once per test binary (the binary is ~2 MB).
fn busybox_layer() -> &'static Layer {
    static L: OnceLock<Layer> = OnceLock::new();
    L.get_or_init(|| {
        let path = crate::proc::busybox_path().expect("busybox binary");
        let bin = std::fs::read(path).expect("read busybox");
        let mut t = Tar::new();
        t.dir("bin").file("bin/busybox", 0o755, &bin);
        for applet in ["sh", "ls", "cat", "echo", "true", "uname"] {
            t.symlink(&format!("bin/{applet}"), "busybox");
        }
        Layer::new(t.finish())
    })
}

/// A small second layer common to all test images.
fn etc_layer() -> &'static Layer {
    static L: OnceLock<Layer> = OnceLock::new();
    L.get_or_init(|| {
        let mut t = Tar::new();
        t.dir("etc")
            .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
            .file("etc/group", 0o644, b"root:x:0:\n")
            .file(
                "etc/os-release",
                0o644,
                b"NAME=holdfast-test\nID=holdfast-test\n",
            )
            .dir("root")
            .dir("tmp");
        Layer::new(t.finish())
    })
}

/// A layer unique to `marker`: `/etc/holdfast-marker` holding it.
pub fn marker_layer(marker: &str) -> Layer {
    let mut t = Tar::new();
    t.dir("etc").file(
        "etc/holdfast-marker",
        0o644,
        format!("{marker}\n").as_bytes(),
    );
    Layer::new(t.finish())
}

/// A manifest with the blobs it names.
#[derive(Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// Config first, then the layers, as they appear in the manifest.
    pub blobs: Vec<Blob>,
}

impl Manifest {
    pub fn digest(&self) -> String {
        digest_of(&self.bytes)
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }

    /// An OCI image manifest for `config` and `layers`; `extra` fields (e.g. `subject`,
    /// `artifactType`, `annotations`) are merged in.
    pub fn oci(config: Blob, layers: Vec<Blob>, extra: Value) -> Manifest {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                m[k] = v;
            }
        }
        let mut blobs = vec![config];
        blobs.extend(layers);
        Manifest {
            bytes: serde_json::to_vec_pretty(&m).unwrap(),
            media_type: OCI_MANIFEST.to_string(),
            blobs,
        }
    }
}

/// A layer of `size` incompressible pseudo-random bytes at `/opt/random.bin` (xorshift,
/// seeded), for pushes big enough to stream in many chunks.
pub fn random_layer(size: usize, seed: u64) -> Layer {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let mut t = Tar::new();
    t.dir("opt").file("opt/random.bin", 0o644, &data);
    Layer::new(t.finish())
}

/// A runnable linux image: busybox, /etc basics, and a marker layer.
#[derive(Clone)]
pub struct Image {
    pub arch: String,
    pub layers: Vec<Layer>,
    pub config: Blob,
    pub manifest: Manifest,
}

impl Image {
    /// Three layers: busybox and /etc are the same in every image (so registries and
    /// clients can reuse them); the third holds `marker` and differs per image.
    pub fn busybox(arch: &str, marker: &str) -> Image {
        Image::build(arch, marker, Vec::new())
    }

    /// [`Image::busybox`] plus a fourth layer of `size` random bytes.
    pub fn busybox_big(arch: &str, marker: &str, size: usize) -> Image {
        Image::build(
            arch,
            marker,
            vec![random_layer(size, size as u64 ^ 0x9e37_79b9)],
        )
    }

    fn build(arch: &str, marker: &str, extra: Vec<Layer>) -> Image {
        let mut layers = vec![
            busybox_layer().clone(),
            etc_layer().clone(),
            marker_layer(marker),
        ];
        layers.extend(extra);
        let mut history = vec![
            json!({"created": "2026-01-01T00:00:00Z", "created_by": "holdfast test: busybox"}),
            json!({"created": "2026-01-01T00:00:00Z", "created_by": "holdfast test: /etc"}),
            json!({"created": "2026-01-01T00:00:00Z", "created_by": format!("holdfast test: marker {marker}")}),
        ];
        while history.len() < layers.len() {
            history.push(
                json!({"created": "2026-01-01T00:00:00Z", "created_by": "holdfast test: extra"}),
            );
        }
        let config = json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"org.example.holdfast.marker": marker},
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(Layer::diff_id).collect::<Vec<_>>(),
            },
            "history": history,
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
        let manifest = Manifest::oci(
            config.clone(),
            layers.iter().map(|l| l.gz.clone()).collect(),
            json!({"annotations": {"org.opencontainers.image.title": marker}}),
        );
        Image {
            arch: arch.to_string(),
            layers,
            config,
            manifest,
        }
    }

    pub fn digest(&self) -> String {
        self.manifest.digest()
    }

    /// The image ID docker and podman show: the config's digest.
    pub fn id(&self) -> String {
        self.config.digest()
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(Layer::diff_id).collect()
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.gz.digest()).collect()
    }
}

/// An OCI artifact (OCI 1.1): empty config, one text blob, `artifactType`, and optionally a
/// `subject` so that it shows up in the subject's referrers.
pub fn artifact(text: &str, subject: Option<&Manifest>) -> Manifest {
    let mut extra = json!({
        "artifactType": "application/vnd.example.holdfast.note.v1",
        "annotations": {"org.opencontainers.image.title": "note.txt"},
    });
    if let Some(s) = subject {
        extra["subject"] = s.descriptor();
    }
    Manifest::oci(
        Blob::new(OCI_EMPTY, b"{}".to_vec()),
        vec![Blob::new("text/plain", text.as_bytes().to_vec())],
        extra,
    )
}

/// An OCI image index over `images`, one `linux/ARCH` platform each. Its `blobs` are the
/// child manifests and all their blobs, so [`write_layout`] stores everything.
pub fn index(images: &[&Image]) -> Manifest {
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut d = i.manifest.descriptor();
            d["platform"] = json!({"architecture": i.arch, "os": "linux"});
            d
        })
        .collect();
    let m = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut blobs = Vec::new();
    for i in images {
        blobs.push(Blob::new(OCI_MANIFEST, i.manifest.bytes.clone()));
        blobs.extend(i.manifest.blobs.iter().cloned());
    }
    Manifest {
        bytes: serde_json::to_vec_pretty(&m).unwrap(),
        media_type: OCI_INDEX.to_string(),
        blobs,
    }
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs").join("sha256").join(hex)
}

/// Writes an OCI image layout at `dir` holding `tagged` manifests (tag, manifest), each
/// named in `index.json` by `org.opencontainers.image.ref.name`, as `oci:DIR:TAG` wants.
pub fn write_layout(dir: &Path, tagged: &[(&str, &Manifest)]) {
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descriptors = Vec::new();
    for (tag, m) in tagged {
        for b in &m.blobs {
            std::fs::write(blob_path(dir, &b.digest()), &b.bytes).unwrap();
        }
        std::fs::write(blob_path(dir, &m.digest()), &m.bytes).unwrap();
        let mut d = m.descriptor();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        descriptors.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The manifest descriptors of a layout's `index.json`, by ref name (tag).
pub fn layout_refs(dir: &Path) -> BTreeMap<String, Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for d in index["manifests"].as_array().unwrap() {
        let name = d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        out.insert(name, d.clone());
    }
    out
}

/// A blob of a layout, checked against its digest.
pub fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let bytes = std::fs::read(blob_path(dir, digest))
        .unwrap_or_else(|e| panic!("layout {} lacks blob {digest}: {e}", dir.display()));
    assert_eq!(
        digest_of(&bytes),
        digest,
        "layout blob content does not match its name"
    );
    bytes
}

/// Writes a `docker save`-style archive (manifest.json, config, plain layer tars) that
/// `docker load` turns into `repo_tag`.
pub fn write_docker_archive(path: &Path, repo_tag: &str, image: &Image) {
    let mut t = Tar::new();
    let config_name = format!("{}.json", sha256_hex(&image.config.bytes));
    t.file(&config_name, 0o644, &image.config.bytes);
    let mut layer_names = Vec::new();
    for l in &image.layers {
        let d = sha256_hex(&l.tar);
        t.dir(&d);
        let name = format!("{d}/layer.tar");
        t.file(&name, 0o644, &l.tar);
        layer_names.push(name);
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": layer_names,
    }]);
    t.file(
        "manifest.json",
        0o644,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    std::fs::write(path, t.finish()).unwrap();
}

/// Writes a tar of an OCI layout folder (an `oci-archive`, which `ctr images import` reads).
pub fn write_oci_archive(path: &Path, layout: &Path) {
    let mut t = Tar::new();
    t.file(
        "oci-layout",
        0o644,
        &std::fs::read(layout.join("oci-layout")).unwrap(),
    );
    t.file(
        "index.json",
        0o644,
        &std::fs::read(layout.join("index.json")).unwrap(),
    );
    t.dir("blobs").dir("blobs/sha256");
    let mut names: Vec<_> = std::fs::read_dir(layout.join("blobs").join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for n in names {
        let bytes = std::fs::read(layout.join("blobs").join("sha256").join(&n)).unwrap();
        t.file(&format!("blobs/sha256/{n}"), 0o644, &bytes);
    }
    std::fs::write(path, t.finish()).unwrap();
}
