//! The benchmark harness: holdfast against CNCF distribution 2.8 (Debian `docker-registry`),
//! both on loopback with TLS, filesystem storage on the same disk and the same auth variant,
//! each workload run against both, alternating A B A B over the rounds. Prints the machine's
//! own limits, a table of medians with the ratio holdfast/distribution and the project's
//! targets, and writes the same as JSON.
//!
//! ```sh
//! cargo test --test bench -- --nocapture                                   # smoke (default)
//! HOLDFAST_BENCH=full cargo test --release --test bench -- --nocapture     # full
//! ```
//!
//! Smoke mode (the default, what CI runs) uses small sizes and one round, asserts only that
//! every request succeeded and the report is well-formed, never timings. Full mode uses the
//! sizes of the issue (1 GiB blobs, 10,000 repositories and tags, 20 × 256 MiB uploads…) and
//! at least three rounds. Environment:
//!
//! - `HOLDFAST_BENCH=full|smoke`; `HOLDFAST_BENCH_ROUNDS=N` (full mode: at least 3);
//! - `HOLDFAST_BENCH_JSON=PATH` where the JSON goes (default: under the target dir);
//! - `HOLDFAST_BENCH_ALLOW_MISSING=1`: without `docker-registry`, run holdfast alone; without
//!   `wrk`, skip the request-rate workloads (otherwise a missing tool is an error);
//! - `HOLDFAST_BENCH_DISTRIBUTION=PATH`, `HOLDFAST_BENCH_WRK=PATH`: other binaries;
//!   `HOLDFAST_BENCH_BINARY=PATH`: another holdfast (full mode otherwise builds and measures
//!   the release binary as shipped, see `holdfast_binary`);
//! - `HOLDFAST_BENCH_ONLY=startup,blobs,manifest,images,lists,uploads`: run only these
//!   workload groups (for profiling one of them; the server PIDs are printed per round);
//! - `HOLDFAST_BENCH_AUTH=both|none|basic`: the auth variants to run (default `both`: every
//!   workload without auth, then again with Basic auth on both servers, each variant with
//!   servers of its own; the JSON holds one report per variant).
//!
//! Nothing is installed: `apt-get install docker-registry wrk` provides the tools.

mod api;
mod ceiling;
mod data;
mod limits;
mod populate;
mod report;
mod sender;
mod servers;
mod workloads;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::api::{Api, ApiResult, Proto};
use crate::data::{pseudo_random, Synth};
use crate::limits::Limits;
use crate::populate::Population;
use crate::report::{check_json, Better, Metric, Report, Target};
use crate::servers::{version_of, Auth, Kind, Server, Tools};
use crate::workloads::Ctx;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Sizes, counts and durations of one mode.
#[derive(Clone, Debug)]
pub struct Settings {
    pub full: bool,
    pub rounds: usize,
    pub pool: usize,
    pub big_blob: u64,
    pub chunk: u64,
    pub manifest_connections: usize,
    pub list_connections: usize,
    pub wrk_time: Duration,
    pub wrk_short_time: Duration,
    pub images: usize,
    pub layer_min: u64,
    pub layer_max: u64,
    pub uploads: usize,
    pub upload_size: u64,
    pub repos: usize,
    pub tags: usize,
    pub idle_settle: Duration,
    pub sha_bytes: u64,
    pub tls_bytes: u64,
    /// Pulls per server, protocol and round; each set of pulls follows a TLS probe, so the
    /// pull/TLS comparison is made from measurements taken moments apart.
    pub pull_repeats: usize,
    pub fsync_bytes: u64,
    pub request_timeout: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let mode = std::env::var("HOLDFAST_BENCH").unwrap_or_default();
        let full = match mode.as_str() {
            "full" => true,
            "" | "smoke" => false,
            other => panic!("HOLDFAST_BENCH={other:?}: expected `full` or `smoke`"),
        };
        let mut s = if full {
            Settings {
                full,
                rounds: 3,
                pool: 64 * MIB as usize,
                big_blob: GIB,
                chunk: 8 * MIB,
                manifest_connections: 64,
                list_connections: 16,
                wrk_time: Duration::from_secs(10),
                wrk_short_time: Duration::from_secs(5),
                images: 50,
                layer_min: MIB,
                layer_max: 8 * MIB,
                uploads: 20,
                upload_size: 256 * MIB,
                repos: 10_000,
                tags: 10_000,
                idle_settle: Duration::from_secs(1),
                sha_bytes: GIB,
                tls_bytes: GIB,
                pull_repeats: 3,
                fsync_bytes: GIB,
                request_timeout: Duration::from_secs(600),
            }
        } else {
            Settings {
                full,
                rounds: 1,
                pool: 4 * MIB as usize,
                big_blob: 8 * MIB,
                chunk: MIB,
                manifest_connections: 64,
                list_connections: 16,
                wrk_time: Duration::from_secs(1),
                wrk_short_time: Duration::from_secs(1),
                images: 8,
                layer_min: 16 * KIB,
                layer_max: 64 * KIB,
                uploads: 4,
                upload_size: 4 * MIB,
                repos: 100,
                tags: 100,
                idle_settle: Duration::from_millis(200),
                sha_bytes: 16 * MIB,
                tls_bytes: 32 * MIB,
                pull_repeats: 1,
                fsync_bytes: 32 * MIB,
                request_timeout: Duration::from_secs(120),
            }
        };
        if let Ok(r) = std::env::var("HOLDFAST_BENCH_ROUNDS") {
            let r: usize = r
                .parse()
                .unwrap_or_else(|_| panic!("HOLDFAST_BENCH_ROUNDS={r:?}: not a number"));
            s.rounds = if full { r.clamp(3, 20) } else { r.clamp(1, 20) };
        }
        s
    }

    fn mode(&self) -> &'static str {
        if self.full {
            "full"
        } else {
            "smoke"
        }
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

fn define_metrics(r: &mut Report, s: &Settings) {
    use Better::{Higher, Lower};
    let big = size_text(s.big_blob);
    let m = Metric::new;
    r.define(m(
        "push_mono",
        format!("1 push {big} blob, POST + one PUT"),
        "MB/s",
        Higher,
        Target::AtLeastOrDisk(2.0, 0.9),
    ));
    r.define(m(
        "push_chunked",
        format!("1 push {big} blob, {} PATCHes", size_text(s.chunk)),
        "MB/s",
        Higher,
        Target::AtLeastOrDisk(2.0, 0.9),
    ));
    r.define(m(
        "pull_h1",
        format!("2 pull {big} blob, HTTP/1.1"),
        "MB/s",
        Higher,
        Target::AtLeastAndTls(1.3, 0.85),
    ));
    r.define(m(
        "pull_h2",
        format!("2 pull {big} blob, HTTP/2"),
        "MB/s",
        Higher,
        Target::AtLeastAndTls(1.3, 0.85),
    ));
    for (id, text) in CPU_PER_GIB.into_iter().zip([
        "server CPU per GiB pulled, HTTP/1.1",
        "client CPU per GiB pulled, HTTP/1.1",
        "server CPU per GiB pulled, HTTP/2",
        "client CPU per GiB pulled, HTTP/2",
    ]) {
        r.define(m(
            id,
            format!("2 (reference) {text}"),
            "s/GiB",
            Lower,
            Target::None,
        ));
    }
    let conns = s.manifest_connections;
    r.define(m(
        "manifest_rps",
        format!("3 manifest GET by tag, {conns} conns"),
        "req/s",
        Higher,
        Target::AtLeast(3.0),
    ));
    r.define(m(
        "manifest_p50",
        "3 manifest GET latency p50".into(),
        "ms",
        Lower,
        Target::None,
    ));
    r.define(m(
        "manifest_p99",
        "3 manifest GET latency p99".into(),
        "ms",
        Lower,
        Target::AtMost(1.0 / 3.0),
    ));
    r.define(m(
        "base_rps",
        format!("3 (reference) GET /v2/, {conns} conns"),
        "req/s",
        Higher,
        Target::None,
    ));
    r.define(m(
        "small_images",
        format!(
            "4 {} concurrent image pushes (3 layers {}-{})",
            s.images,
            size_text(s.layer_min),
            size_text(s.layer_max)
        ),
        "images/s",
        Higher,
        Target::AtLeast(2.0),
    ));
    r.define(m(
        "catalog_rps",
        format!("5 _catalog?n=100, {} repos", s.repos),
        "req/s",
        Higher,
        Target::AtLeast(20.0),
    ));
    r.define(m(
        "tags_rps",
        format!("5 tags/list?n=100, {} tags", s.tags),
        "req/s",
        Higher,
        Target::AtLeast(20.0),
    ));
    r.define(m(
        "idle_rss",
        format!("6 idle RSS ({} repos stored)", s.repos),
        "MiB",
        Lower,
        Target::AtMost(1.0 / 3.0),
    ));
    r.define(m(
        "idle_rss_anon",
        "6 (reference) idle RssAnon (heap, stacks)".into(),
        "MiB",
        Lower,
        Target::None,
    ));
    r.define(m(
        "peak_rss_small",
        "6 peak RSS during workload 4".into(),
        "MiB",
        Lower,
        Target::None,
    ));
    r.define(m(
        "peak_rss_uploads",
        format!(
            "6 peak RSS during {} x {} uploads",
            s.uploads,
            size_text(s.upload_size)
        ),
        "MiB",
        Lower,
        Target::AtMost(1.0),
    ));
    r.define(m(
        "uploads_mb_s",
        format!(
            "6 (reference) {} x {} uploads, total",
            s.uploads,
            size_text(s.upload_size)
        ),
        "MB/s",
        Higher,
        Target::None,
    ));
    r.define(m(
        "startup",
        format!("7 start-up to GET /v2/ 200, {} repos", s.repos),
        "ms",
        Lower,
        Target::AtMost(1.0),
    ));
}

/// Reference rows: CPU seconds per GiB pulled, server and client, HTTP/1.1 and HTTP/2.
const CPU_PER_GIB: [&str; 4] = [
    "pull_h1_server_cpu",
    "pull_h1_client_cpu",
    "pull_h2_server_cpu",
    "pull_h2_client_cpu",
];

/// Workload groups (what `HOLDFAST_BENCH_ONLY` selects) and the metrics each produces.
const GROUPS: [(&str, &[&str]); 6] = [
    ("startup", &["startup", "idle_rss", "idle_rss_anon"]),
    (
        "blobs",
        &[
            "push_mono",
            "push_chunked",
            "pull_h1",
            "pull_h2",
            CPU_PER_GIB[0],
            CPU_PER_GIB[1],
            CPU_PER_GIB[2],
            CPU_PER_GIB[3],
        ],
    ),
    (
        "manifest",
        &["manifest_rps", "manifest_p50", "manifest_p99", "base_rps"],
    ),
    ("images", &["small_images", "peak_rss_small"]),
    ("lists", &["catalog_rps", "tags_rps"]),
    ("uploads", &["peak_rss_uploads", "uploads_mb_s"]),
];

/// `HOLDFAST_BENCH_ONLY=blobs,manifest,…` (default: all groups).
fn selected_groups() -> Result<Vec<&'static str>, String> {
    let all: Vec<&'static str> = GROUPS.iter().map(|(g, _)| *g).collect();
    let Ok(v) = std::env::var("HOLDFAST_BENCH_ONLY") else {
        return Ok(all);
    };
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match all.iter().find(|g| **g == part) {
            Some(g) => out.push(*g),
            None => {
                return Err(format!(
                    "HOLDFAST_BENCH_ONLY: unknown workload group {part:?} (known: {})",
                    all.join(", ")
                ))
            }
        }
    }
    Ok(out)
}

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// `df -P` of a path: (filesystem, available KiB, mount point).
fn df(path: &Path) -> Option<(String, u64, String)> {
    let out = Command::new("df").arg("-P").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().nth(1)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    Some((f[0].to_owned(), f[3].parse().ok()?, f[5].to_owned()))
}

fn json_path() -> PathBuf {
    match std::env::var_os("HOLDFAST_BENCH_JSON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("holdfast-bench.json"),
    }
}

fn main() {
    if let Some(code) = sender::run_if_sender() {
        std::process::exit(code);
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The root future runs on this (main) thread, which therefore spawns every server: the
    // servers' death signal is tied to it.
    let result = runtime.block_on(run(settings));
    drop(runtime);
    if let Err(e) = result {
        eprintln!("\nbench: FAILED: {e}");
        std::process::exit(1);
    }
}

/// Runs every selected auth variant (`HOLDFAST_BENCH_AUTH`, default: no auth, then Basic
/// auth) with servers of its own, and writes one JSON report holding each variant's.
async fn run(s: Settings) -> Result<(), String> {
    let wall = Instant::now();
    let variants = Auth::variants_from_env()?;
    let (binary, build) = holdfast_binary(&s)?;
    let mut reports = Vec::new();
    let mut kinds = Vec::new();
    for auth in variants {
        println!("\n######## auth variant: {}", auth.name());
        let (report, k) = run_variant(s.clone(), auth, &binary, build).await?;
        reports.push(report);
        kinds = k;
    }
    let v = json!({
        "command": "HOLDFAST_BENCH=full cargo test --release --test bench -- --nocapture",
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "variants": reports,
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    let path = json_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    let back: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    )
    .map_err(|e| format!("report is not JSON: {e}"))?;
    let back_variants = back["variants"]
        .as_array()
        .ok_or("report has no variants array")?;
    for variant in back_variants {
        check_json(&variant.to_string(), &kinds)?;
    }
    println!(
        "\n== JSON report ({} variant(s)): {}",
        back_variants.len(),
        path.display()
    );
    println!("== total {:.1} s", wall.elapsed().as_secs_f64());
    Ok(())
}

/// The holdfast binary under test, and how it was built.
///
/// Full mode measures the binary that ships. `cargo test` links a variant of its own: the
/// dev-dependencies add features to crates the program shares with them (tokio's `full`,
/// getrandom, regex…), which changes its code and its symbol names (so `src/link/startup.ld`
/// matches it only by the hash-less names). So a full run with a release harness first runs
/// `cargo build --release --locked --bin holdfast`, which relinks `target/release/holdfast`
/// as shipped, and measures that. `HOLDFAST_BENCH_BINARY=PATH` measures another binary.
fn holdfast_binary(s: &Settings) -> Result<(PathBuf, &'static str), String> {
    if let Some(path) = std::env::var_os("HOLDFAST_BENCH_BINARY") {
        return Ok((PathBuf::from(path), "given by HOLDFAST_BENCH_BINARY"));
    }
    let test_build = PathBuf::from(env!("CARGO_BIN_EXE_holdfast"));
    let release = test_build.components().any(|c| c.as_os_str() == "release");
    if !release {
        return Ok((test_build, "debug build"));
    }
    if !s.full {
        return Ok((test_build, "release, test build"));
    }
    println!("== building holdfast as shipped: cargo build --release --locked --bin holdfast");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--bin", "holdfast"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("run cargo build --release: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed ({status})"));
    }
    Ok((test_build, "release, as shipped: cargo build --release"))
}

/// One auth variant: starts both servers, populates them, runs the rounds, prints the
/// table; returns the variant's JSON report and the servers that ran.
async fn run_variant(
    s: Settings,
    auth: Auth,
    binary: &Path,
    build: &str,
) -> Result<(serde_json::Value, Vec<Kind>), String> {
    let wall = Instant::now();
    let release = build.starts_with("release");
    println!(
        "== holdfast benchmark, {} mode, {} round(s)",
        s.mode(),
        s.rounds
    );
    println!("   full run: HOLDFAST_BENCH=full cargo test --release --test bench -- --nocapture");
    println!("   holdfast binary: {} ({build})", binary.display());
    if s.full && !release {
        println!("   WARNING: full mode with a debug build of holdfast: numbers are meaningless; use --release");
    }

    // ---- tools: found, never installed ----
    let allow_missing = env_flag("HOLDFAST_BENCH_ALLOW_MISSING");
    let tools = Tools::find();
    let mut report = Report::new();
    define_metrics(&mut report, &s);
    let only = selected_groups()?;
    for (group, ids) in GROUPS {
        if !only.contains(&group) {
            for id in ids {
                report
                    .skipped
                    .push(format!("{id}: not selected (HOLDFAST_BENCH_ONLY)"));
            }
        }
    }
    if !s.full {
        for id in CPU_PER_GIB {
            report.skipped.push(format!(
                "{id}: smoke transfers are shorter than CPU accounting's 10 ms ticks"
            ));
        }
    }
    let how = "install with `apt-get install docker-registry wrk`";
    if tools.distribution.is_none() {
        let msg = format!(
            "distribution (docker-registry) not found at {}: {how} \
             (or set HOLDFAST_BENCH_ALLOW_MISSING=1 to run holdfast alone)",
            servers::distribution_path().display()
        );
        if !allow_missing {
            return Err(msg);
        }
        println!("   WARNING: {msg}");
        println!("   RUNNING HOLDFAST ONLY: no comparison, ratios and targets are empty");
        report
            .notes
            .push("docker-registry missing: holdfast only".into());
    }
    if tools.wrk.is_none() {
        let msg = format!("wrk not found on PATH: {how} (or set HOLDFAST_BENCH_ALLOW_MISSING=1)");
        if !allow_missing {
            return Err(msg);
        }
        println!("   WARNING: {msg}; skipping the request-rate workloads (3 and 5)");
        for id in [
            "manifest_rps",
            "manifest_p50",
            "manifest_p99",
            "base_rps",
            "catalog_rps",
            "tags_rps",
        ] {
            report.skipped.push(format!("{id}: wrk missing"));
        }
    }
    let holdfast_version = version_of(binary, &["--version"]);
    let distribution_version = tools
        .distribution
        .as_deref()
        .map(|p| version_of(p, &["--version"]))
        .unwrap_or_default();
    let wrk_version = tools
        .wrk
        .as_deref()
        .map(|p| version_of(p, &["-v"]))
        .unwrap_or_default();
    println!("   holdfast: {holdfast_version}");
    if tools.distribution.is_some() {
        println!("   distribution: {distribution_version}");
    }
    if tools.wrk.is_some() {
        println!("   wrk: {wrk_version}");
    }
    println!("   auth variant: {}", auth.name());

    // ---- one temporary directory for everything, on the disk /tmp is on ----
    let tmp = tempfile::Builder::new()
        .prefix("holdfast-bench-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let work = tmp.path().to_path_buf();
    let fs_here = df(&work);
    let fs_tmp = df(Path::new("/tmp"));
    let fs_text = match (&fs_here, &fs_tmp) {
        (Some((dev, avail, mnt)), Some((tdev, _, _))) => {
            let same = if dev == tdev {
                "same filesystem as /tmp"
            } else {
                "NOT the filesystem of /tmp"
            };
            format!(
                "{} on {dev} mounted at {mnt} ({same}), {} GiB free",
                work.display(),
                avail / (1024 * 1024)
            )
        }
        _ => format!("{} (df failed)", work.display()),
    };
    println!("   data: {fs_text}");
    if s.full {
        // Per round at most: two big blobs per server, the concurrent uploads per server,
        // the small images; everything is deleted as it goes.
        let need = 2 * (2 * s.big_blob + s.uploads as u64 * s.upload_size) + 4 * GIB;
        if let Some((_, avail_kib, _)) = &fs_here {
            if avail_kib * 1024 < need {
                return Err(format!(
                    "not enough free disk under {}: {} GiB free, the full run needs about {} GiB",
                    work.display(),
                    avail_kib / (1024 * 1024),
                    need / GIB
                ));
            }
        }
    }

    let pool = Bytes::from(pseudo_random(0x4b1d, s.pool));

    // ---- servers ----
    let mut hf = Server::holdfast(&work.join("holdfast"), binary, &auth, tools.setpriv)?;
    hf.start().await?;
    let mut servers = vec![hf];
    if let Some(dist_bin) = &tools.distribution {
        let tls = servers[0].generated_tls();
        let mut d = Server::distribution(
            &work.join("distribution"),
            dist_bin,
            tls,
            &auth,
            tools.setpriv,
        )?;
        d.start().await?;
        servers.push(d);
    }
    let kinds: Vec<Kind> = servers.iter().map(|s| s.kind).collect();

    let tls_files = {
        let (cert, key, ca) = servers[0].generated_tls();
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        (read(&cert)?, read(&key)?, read(&ca)?)
    };
    let mut limit_samples = LimitSamples::default();
    // The bulk cipher sets the pull ceiling: record what each server picks for the harness's
    // client, and probe loopback TLS with holdfast's pick.
    for srv in servers.iter() {
        let suite = limits::negotiated_suite(&srv.base, &tls_files.2).await?;
        if srv.kind == Kind::Holdfast {
            limit_samples.suite = Some(suite);
        }
        limit_samples
            .suites
            .push((srv.kind.to_string(), format!("{suite:?}")));
    }

    // ---- populate: seed via the API, replicate on disk, verify via the API ----
    let t = Instant::now();
    let seed = populate::seed_image(&pool);
    for srv in servers.iter() {
        let api = Api::new(srv, Proto::H1, s.request_timeout);
        populate::push_seed(&api, &seed).await?;
    }
    let pop = Population::new(s.repos, s.tags, seed.manifest_digest());
    let mut files = Vec::new();
    for srv in servers.iter_mut() {
        srv.stop();
        let n = populate::replicate(srv, s.repos, s.tags)
            .map_err(|e| format!("{}: writing repositories: {e}", srv.kind))?;
        files.push(format!("{}: {n} files", srv.kind));
        srv.start().await?;
    }
    for srv in servers.iter() {
        let api = Api::new(srv, Proto::H1, s.request_timeout);
        report
            .notes
            .extend(populate::verify(srv, &api, &pop).await?);
    }
    println!(
        "== populated {} repositories and {} tags by copying each server's own seed layout \
         ({}), verified via the API, in {:.1} s",
        s.repos,
        s.tags,
        files.join(", "),
        t.elapsed().as_secs_f64()
    );

    // ---- the concurrent uploads' blobs, hashed once ----
    let uploads: Vec<(Synth, String)> = {
        let n = if only.contains(&"uploads") {
            s.uploads
        } else {
            0
        };
        let blobs: Vec<Synth> = (0..n)
            .map(|i| Synth::new(&pool, &format!("upload {i}"), s.upload_size))
            .collect();
        let mut out = Vec::new();
        for b in blobs {
            let d = workloads::digest_of(&b).await;
            out.push((b, d));
        }
        out
    };
    let ctx = Ctx {
        s: s.clone(),
        pool: pool.clone(),
        pop,
        wrk: tools.wrk.clone(),
        work_dir: work.clone(),
        uploads,
        tls: tls_files.clone(),
        tls_suite: limit_samples.suite,
    };

    // ---- rounds: every workload A then B ----
    for round in 0..s.rounds {
        let t = Instant::now();
        let pids: Vec<String> = servers
            .iter()
            .map(|srv| format!("{} pid {}", srv.kind, srv.pid()))
            .collect();
        println!(
            "== round {} of {} ({})",
            round + 1,
            s.rounds,
            pids.join(", ")
        );
        step(
            "machine limits",
            limit_samples.measure(&s, &pool, &work, &tls_files),
        )
        .await?;
        if only.contains(&"startup") {
            step(
                "start-up and idle RSS",
                workloads::startup_and_idle(&ctx, &mut report, &mut servers),
            )
            .await?;
        }
        if only.contains(&"blobs") {
            let mut near = workloads::PullLimits::default();
            step(
                "blob push and pull",
                workloads::big_blobs(&ctx, &mut report, &mut servers, round, &mut near),
            )
            .await?;
            limit_samples.tls.extend(near.tls);
            limit_samples.two_process.extend(near.tls_two_process);
            limit_samples
                .two_process_sender_cpu
                .extend(near.tls_two_process_sender_cpu);
            limit_samples
                .two_process_receiver_cpu
                .extend(near.tls_two_process_receiver_cpu);
            limit_samples.ceiling_h1.extend(near.ceiling_h1);
            limit_samples.ceiling_h2.extend(near.ceiling_h2);
            limit_samples.tls_cpu.extend(near.tls_cpu);
            limit_samples.ceiling_h1_cpu.extend(near.ceiling_h1_cpu);
            limit_samples.ceiling_h2_cpu.extend(near.ceiling_h2_cpu);
        }
        if only.contains(&"manifest") {
            step(
                "manifest GET",
                workloads::manifest_get(&ctx, &mut report, &mut servers),
            )
            .await?;
        }
        if only.contains(&"images") {
            let images = workloads::make_images(&ctx, round).await;
            let image_bytes: u64 = images.iter().map(|i| i.bytes()).sum();
            if round == 0 {
                report.notes.push(format!(
                    "workload 4 pushes {} images of {:.1} MB in total per server and round",
                    images.len(),
                    image_bytes as f64 / 1e6
                ));
            }
            step(
                "small-image pushes",
                workloads::small_images(&ctx, &mut report, &mut servers, round, &images),
            )
            .await?;
        }
        if only.contains(&"lists") {
            step(
                "catalog and tag pages",
                workloads::listing(&ctx, &mut report, &mut servers),
            )
            .await?;
        }
        if only.contains(&"uploads") {
            step(
                "concurrent uploads",
                workloads::big_uploads(&ctx, &mut report, &mut servers),
            )
            .await?;
        }
        println!(
            "   round {} took {:.1} s",
            round + 1,
            t.elapsed().as_secs_f64()
        );
    }
    for srv in servers.iter_mut() {
        srv.stop();
    }
    drop(servers);

    // ---- report ----
    let limits = limit_samples.medians();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "\n== machine limits (same run, medians of {} measurement(s), one per round)",
        limit_samples.sha.len()
    );
    println!("   CPUs: {cpus}");
    println!(
        "   SHA-256, one core (sha2 crate{}): {:.0} MB/s over {}",
        if cfg!(debug_assertions) {
            ", debug build of the harness"
        } else {
            ""
        },
        limits.sha256_mb_s,
        size_text(s.sha_bytes)
    );
    println!(
        "   TLS on loopback (rustls/ring both ends, {}): {:.0} MB/s over {} \
         ({} measurement(s): one per round, one before each set of pulls; samples: {})",
        limits.tls_cipher,
        limits.tls_loopback_mb_s,
        size_text(s.tls_bytes),
        limit_samples.tls.len(),
        limit_samples
            .tls
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let m = |v: &[f64]| report::median(v).unwrap_or(f64::NAN);
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !limit_samples.two_process.is_empty() {
        println!(
            "   TLS between two processes (the same probe, its sender another process): \
             {:.0} MB/s (samples: {})",
            m(&limit_samples.two_process),
            list(&limit_samples.two_process, 0),
        );
        if !limit_samples.two_process_sender_cpu.is_empty() {
            println!(
                "   its CPU per GiB: sender {:.2} s (samples: {}), receiver {:.2} s (samples: {})",
                m(&limit_samples.two_process_sender_cpu),
                list(&limit_samples.two_process_sender_cpu, 2),
                m(&limit_samples.two_process_receiver_cpu),
                list(&limit_samples.two_process_receiver_cpu, 2),
            );
        }
    }
    if !limit_samples.ceiling_h1.is_empty() {
        println!(
            "   pull ceiling of the harness's client (in-process hyper server, body from memory): \
             HTTP/1.1 {:.0} MB/s (samples: {}), HTTP/2 {:.0} MB/s (samples: {})",
            m(&limit_samples.ceiling_h1),
            list(&limit_samples.ceiling_h1, 0),
            m(&limit_samples.ceiling_h2),
            list(&limit_samples.ceiling_h2, 0),
        );
        if !limit_samples.tls_cpu.is_empty() {
            println!(
                "   CPU per GiB, both ends together (compare with a pull's server + client CPU): \
                 TLS probe {:.2} s (samples: {}), ceiling HTTP/1.1 {:.2} s (samples: {}), \
                 HTTP/2 {:.2} s (samples: {})",
                m(&limit_samples.tls_cpu),
                list(&limit_samples.tls_cpu, 2),
                m(&limit_samples.ceiling_h1_cpu),
                list(&limit_samples.ceiling_h1_cpu, 2),
                m(&limit_samples.ceiling_h2_cpu),
                list(&limit_samples.ceiling_h2_cpu, 2),
            );
        }
    }
    println!(
        "   TLS suite each server picks for the harness's client: {}",
        limit_samples
            .suites
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "   sequential write + fsync, same disk: {:.0} MB/s over {} (samples: {})",
        limits.fsync_write_mb_s,
        size_text(s.fsync_bytes),
        limit_samples
            .disk
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let judge = s.full;
    println!(
        "\n== results ({} mode, {} round(s), medians; ratio = holdfast / distribution)",
        s.mode(),
        s.rounds
    );
    print!("{}", report.table(&limits, judge));
    // The pull target is set against the in-process probe; a registry is another process.
    if let Some(two) = report::median(&limit_samples.two_process) {
        for id in ["pull_h1", "pull_h2"] {
            let pulled = report.metrics.iter().find(|x| x.id == id);
            if let Some(h) = pulled.and_then(|x| x.median(Kind::Holdfast)) {
                println!(
                    "   {id}: holdfast at {:.0}% of loopback TLS in one process, {:.0}% of TLS \
                     between two processes",
                    100.0 * h / limits.tls_loopback_mb_s,
                    100.0 * h / two
                );
            }
        }
    }
    if !judge {
        println!(
            "   smoke mode: small sizes, one round, usually a debug build: targets are not judged"
        );
    }
    for n in &report.notes {
        println!("   note: {n}");
    }
    for n in &report.skipped {
        println!("   skipped: {n}");
    }
    let head = json!({
        "mode": s.mode(),
        "rounds": s.rounds,
        "auth": auth.name(),
        "command": "HOLDFAST_BENCH=full cargo test --release --test bench -- --nocapture",
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "units": {"MB": "10^6 bytes", "MiB": "2^20 bytes"},
        "holdfast": {"binary": binary.display().to_string(), "release": release, "build": build, "version": holdfast_version},
        "distribution": {"binary": tools.distribution.as_ref().map(|p| p.display().to_string()), "version": distribution_version},
        "load_generator": {"wrk": wrk_version},
        "machine": {
            "cpus": cpus,
            "sha256_mb_s": limits.sha256_mb_s,
            "tls_loopback_mb_s": limits.tls_loopback_mb_s,
            "tls_cipher": limits.tls_cipher,
            "tls_two_process_mb_s": report::median(&limit_samples.two_process),
            "tls_two_process_sender_cpu_s_per_gib": report::median(&limit_samples.two_process_sender_cpu),
            "tls_two_process_receiver_cpu_s_per_gib": report::median(&limit_samples.two_process_receiver_cpu),
            "pull_ceiling_h1_mb_s": report::median(&limit_samples.ceiling_h1),
            "pull_ceiling_h2_mb_s": report::median(&limit_samples.ceiling_h2),
            "tls_loopback_cpu_s_per_gib": report::median(&limit_samples.tls_cpu),
            "pull_ceiling_h1_cpu_s_per_gib": report::median(&limit_samples.ceiling_h1_cpu),
            "pull_ceiling_h2_cpu_s_per_gib": report::median(&limit_samples.ceiling_h2_cpu),
            "tls_suites": limit_samples.suites.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "fsync_write_mb_s": limits.fsync_write_mb_s,
            "samples": {
                "sha256_mb_s": limit_samples.sha,
                "tls_loopback_mb_s": limit_samples.tls,
                "tls_two_process_mb_s": limit_samples.two_process,
                "tls_two_process_sender_cpu_s_per_gib": limit_samples.two_process_sender_cpu,
                "tls_two_process_receiver_cpu_s_per_gib": limit_samples.two_process_receiver_cpu,
                "pull_ceiling_h1_mb_s": limit_samples.ceiling_h1,
                "pull_ceiling_h2_mb_s": limit_samples.ceiling_h2,
                "tls_loopback_cpu_s_per_gib": limit_samples.tls_cpu,
                "pull_ceiling_h1_cpu_s_per_gib": limit_samples.ceiling_h1_cpu,
                "pull_ceiling_h2_cpu_s_per_gib": limit_samples.ceiling_h2_cpu,
                "fsync_write_mb_s": limit_samples.disk,
            },
            "filesystem": fs_text,
            "harness_build": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "settings": {
            "big_blob_bytes": s.big_blob, "chunk_bytes": s.chunk,
            "manifest_connections": s.manifest_connections, "list_connections": s.list_connections,
            "wrk_seconds": s.wrk_time.as_secs(), "wrk_short_seconds": s.wrk_short_time.as_secs(),
            "images": s.images, "layer_min_bytes": s.layer_min, "layer_max_bytes": s.layer_max,
            "uploads": s.uploads, "upload_bytes": s.upload_size,
            "repositories": s.repos, "tags": s.tags,
        },
    });
    let v = report.json(&limits, judge, head);
    println!(
        "== {} variant took {:.1} s",
        auth.name(),
        wall.elapsed().as_secs_f64()
    );
    drop(tmp);
    Ok((v, kinds))
}

/// The machine's limits, measured at the start of every round (servers idle).
#[derive(Default)]
struct LimitSamples {
    sha: Vec<f64>,
    tls: Vec<f64>,
    disk: Vec<f64>,
    cipher: String,
    /// The TLS probe with its sender in another process (`sender`), MB/s, and (full runs)
    /// each end's CPU seconds per GiB.
    two_process: Vec<f64>,
    two_process_sender_cpu: Vec<f64>,
    two_process_receiver_cpu: Vec<f64>,
    /// The harness client's pull ceiling (an in-process hyper server, `ceiling`).
    ceiling_h1: Vec<f64>,
    ceiling_h2: Vec<f64>,
    /// CPU seconds per GiB (both ends, full runs) of the TLS probes next to the pulls and
    /// of the ceiling pulls.
    tls_cpu: Vec<f64>,
    ceiling_h1_cpu: Vec<f64>,
    ceiling_h2_cpu: Vec<f64>,
    /// The suite the TLS probe is limited to (holdfast's pick).
    suite: Option<rustls::CipherSuite>,
    /// (server, suite it picked).
    suites: Vec<(String, String)>,
}

impl LimitSamples {
    async fn measure(
        &mut self,
        s: &Settings,
        pool: &Bytes,
        dir: &Path,
        (cert, key, ca): &(Vec<u8>, Vec<u8>, Vec<u8>),
    ) -> ApiResult<()> {
        let p = pool.clone();
        let sha_bytes = s.sha_bytes;
        let sha = tokio::task::spawn_blocking(move || limits::sha256_rate(&p, sha_bytes))
            .await
            .map_err(|e| e.to_string())?;
        let (tls, cipher) =
            limits::tls_loopback_rate(cert, key, ca, self.suite, pool.clone(), s.tls_bytes).await?;
        let p = pool.clone();
        let dir = dir.to_path_buf();
        let fsync_bytes = s.fsync_bytes;
        let disk =
            tokio::task::spawn_blocking(move || limits::fsync_write_rate(&dir, &p, fsync_bytes))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("fsync'd write: {e}"))?;
        self.sha.push(sha);
        self.tls.push(tls);
        self.disk.push(disk);
        self.cipher = cipher;
        Ok(())
    }

    fn medians(&self) -> Limits {
        let m = |v: &[f64]| report::median(v).unwrap_or(f64::NAN);
        Limits {
            sha256_mb_s: m(&self.sha),
            tls_loopback_mb_s: m(&self.tls),
            tls_cipher: self.cipher.clone(),
            fsync_write_mb_s: m(&self.disk),
        }
    }
}

/// Runs one workload step, printing how long it took.
async fn step(name: &str, f: impl std::future::Future<Output = ApiResult<()>>) -> ApiResult<()> {
    let t = Instant::now();
    f.await.map_err(|e| format!("{name}: {e}"))?;
    println!("   {name}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
