//! The workloads. Each runs against every server in turn (holdfast, then distribution: A B,
//! round after round), records one sample per server per round, and fails on the first
//! request that does not get the spec's answer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::api::{Api, ApiResult, Image, Proto, MANIFEST_ACCEPT};
use crate::data::{Rng, Synth};
use crate::populate::Population;
use crate::report::Report;
use crate::servers::{proc_cpu_seconds, proc_status_kib, reset_peak_rss, Server};
use crate::Settings;

const MIB: f64 = 1024.0 * 1024.0;

/// CPU seconds used so far by a process (`"self"`: the harness), or an error naming it.
fn cpu_of(pid: &str) -> Result<f64, String> {
    proc_cpu_seconds(pid).ok_or_else(|| format!("cannot read the CPU time of process {pid}"))
}

pub struct Ctx {
    pub s: Settings,
    pub pool: Bytes,
    pub pop: Population,
    pub wrk: Option<PathBuf>,
    pub work_dir: PathBuf,
    /// The blobs of the concurrent-upload memory workload, with digests (made once).
    pub uploads: Vec<(Synth, String)>,
    /// holdfast's certificate, key and CA (PEM), for the TLS probes next to the pulls.
    pub tls: (Vec<u8>, Vec<u8>, Vec<u8>),
    /// The suite holdfast picks for the harness's client; the probes use it.
    pub tls_suite: Option<rustls::CipherSuite>,
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Hashes off the async threads.
pub async fn digest_of(blob: &Synth) -> String {
    let b = blob.clone();
    tokio::task::spawn_blocking(move || b.digest())
        .await
        .expect("hashing task")
}

/// Samples a process's RSS every 10 ms until stopped; also resets its peak (`VmHWM`) at
/// start so the peak read at the end covers only the sampled period.
struct RssSampler {
    pid: u32,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let hwm_reset = reset_peak_rss(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut max = 0u64;
            // Bounded: at most one hour of samples.
            for _ in 0..360_000 {
                if let Some(v) = proc_status_kib(pid, "VmRSS") {
                    max = max.max(v);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max
        });
        RssSampler {
            pid,
            hwm_reset,
            stop,
            task,
        }
    }

    /// Peak RSS in MiB: the larger of the sampled maximum and (when it could be reset) the
    /// kernel's `VmHWM`.
    async fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.task.await.unwrap_or(0);
        let hwm = if self.hwm_reset {
            proc_status_kib(self.pid, "VmHWM").unwrap_or(0)
        } else {
            0
        };
        sampled.max(hwm) as f64 * 1024.0 / MIB
    }
}

/// 7 and 6 (idle): restart each server, time it to the first `GET /v2/` answered 200, then
/// let it settle and read its RSS.
pub async fn startup_and_idle(
    ctx: &Ctx,
    report: &mut Report,
    servers: &mut [Server],
) -> ApiResult<()> {
    for s in servers.iter_mut() {
        s.stop();
        let took = s.start().await?;
        report.add("startup", s.kind, took.as_secs_f64() * 1e3);
        tokio::time::sleep(ctx.s.idle_settle).await;
        let rss = proc_status_kib(s.pid(), "VmRSS").ok_or("cannot read VmRSS")?;
        report.add("idle_rss", s.kind, rss as f64 / 1024.0);
        // The private part: heap and stacks, without the mapped program text and libraries.
        let anon = proc_status_kib(s.pid(), "RssAnon").ok_or("cannot read RssAnon")?;
        report.add("idle_rss_anon", s.kind, anon as f64 / 1024.0);
    }
    Ok(())
}

/// Limits measured next to the pulls, MB/s: the bare TLS probe, the same between two
/// processes (`sender`) and the harness client's pull ceiling (`ceiling`) over HTTP/1.1 and
/// HTTP/2; in full runs also the CPU seconds per GiB each of them cost (both ends together
/// for those inside the harness, each end for the two processes), to set beside a pull's
/// server and client CPU.
#[derive(Default)]
pub struct PullLimits {
    pub tls: Vec<f64>,
    pub tls_two_process: Vec<f64>,
    pub tls_two_process_sender_cpu: Vec<f64>,
    pub tls_two_process_receiver_cpu: Vec<f64>,
    pub ceiling_h1: Vec<f64>,
    pub ceiling_h2: Vec<f64>,
    pub tls_cpu: Vec<f64>,
    pub ceiling_h1_cpu: Vec<f64>,
    pub ceiling_h2_cpu: Vec<f64>,
}

/// 1 and 2: push a large blob monolithically and chunked, pull it over HTTP/1.1 and HTTP/2
/// (`pull_repeats` times, each time right after the loopback TLS probes and the client's
/// pull ceiling, which go to `limits`), then delete the stored bytes (disk hygiene; not
/// timed).
pub async fn big_blobs(
    ctx: &Ctx,
    report: &mut Report,
    servers: &mut [Server],
    round: usize,
    limits: &mut PullLimits,
) -> ApiResult<()> {
    let size = ctx.s.big_blob;
    let repo = "bench/push";
    let mono = Synth::new(&ctx.pool, &format!("monolithic round {round}"), size);
    let chunked = Synth::new(&ctx.pool, &format!("chunked round {round}"), size);
    let mono_d = digest_of(&mono).await;
    let chunked_d = digest_of(&chunked).await;
    for s in servers.iter() {
        let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
        let t = Instant::now();
        api.push_monolithic(repo, &mono, &mono_d).await?;
        report.add("push_mono", s.kind, mb_s(size, t.elapsed()));
    }
    for s in servers.iter() {
        let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
        let t = Instant::now();
        api.push_chunked(repo, &chunked, &chunked_d, ctx.s.chunk)
            .await?;
        report.add("push_chunked", s.kind, mb_s(size, t.elapsed()));
    }
    if round == 0 {
        // Untimed: the pushed bytes come back intact from both servers.
        for s in servers.iter() {
            let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
            api.pull_blob(repo, &mono_d, true).await?;
            api.pull_blob(repo, &chunked_d, true).await?;
        }
    }
    for _ in 0..ctx.s.pull_repeats {
        let (cert, key, ca) = &ctx.tls;
        let cpu_before = cpu_of("self")?;
        let (rate, _) = crate::limits::tls_loopback_rate(
            cert,
            key,
            ca,
            ctx.tls_suite,
            ctx.pool.clone(),
            ctx.s.tls_bytes,
        )
        .await?;
        limits.tls.push(rate);
        if ctx.s.full {
            let gib = ctx.s.tls_bytes as f64 / (1u64 << 30) as f64;
            limits.tls_cpu.push((cpu_of("self")? - cpu_before) / gib);
        }
        let two = crate::sender::two_process_rate(
            &ctx.tls,
            ctx.tls_suite,
            ctx.s.tls_bytes,
            &ctx.work_dir.join("tls-sender"),
        )
        .await?;
        limits.tls_two_process.push(two.mb_s);
        if ctx.s.full {
            limits.tls_two_process_sender_cpu.push(two.sender_cpu);
            limits.tls_two_process_receiver_cpu.push(two.receiver_cpu);
        }
        for (proto, into, cpu_into) in [
            (
                Proto::H1,
                &mut limits.ceiling_h1,
                &mut limits.ceiling_h1_cpu,
            ),
            (
                Proto::H2,
                &mut limits.ceiling_h2,
                &mut limits.ceiling_h2_cpu,
            ),
        ] {
            let cpu_before = cpu_of("self")?;
            into.push(
                crate::ceiling::pull_ceiling(
                    &ctx.tls,
                    ctx.tls_suite,
                    ctx.pool.clone(),
                    size,
                    proto,
                    ctx.s.request_timeout,
                )
                .await?,
            );
            if ctx.s.full {
                let gib = size as f64 / (1u64 << 30) as f64;
                cpu_into.push((cpu_of("self")? - cpu_before) / gib);
            }
        }
        for (id, proto, version) in [
            ("pull_h1", Proto::H1, reqwest::Version::HTTP_11),
            ("pull_h2", Proto::H2, reqwest::Version::HTTP_2),
        ] {
            for s in servers.iter() {
                let api = Api::new(s, proto, ctx.s.request_timeout);
                let server_pid = s.pid().to_string();
                let cpu_before = (cpu_of(&server_pid)?, cpu_of("self")?);
                let t = Instant::now();
                let (n, v) = api.pull_blob(repo, &mono_d, false).await?;
                let took = t.elapsed();
                let cpu_after = (cpu_of(&server_pid)?, cpu_of("self")?);
                if n != size || v != version {
                    return Err(format!(
                        "{}: pull got {n} bytes over {v:?}, expected {size} over {version:?}",
                        s.kind
                    ));
                }
                report.add(id, s.kind, mb_s(size, took));
                // CPU per GiB moved, server and client: what each side spends, which a
                // shared two-core machine's noise moves far less than the rate. The kernel
                // counts it in 10 ms ticks, too coarse for a smoke run's 8 MiB (those rows
                // are skipped there).
                if ctx.s.full {
                    let gib = size as f64 / (1u64 << 30) as f64;
                    let server = (cpu_after.0 - cpu_before.0) / gib;
                    let client = (cpu_after.1 - cpu_before.1) / gib;
                    report.add(&format!("{id}_server_cpu"), s.kind, server);
                    report.add(&format!("{id}_client_cpu"), s.kind, client);
                }
            }
        }
    }
    for s in servers.iter() {
        s.forget_blob(&mono_d);
        s.forget_blob(&chunked_d);
    }
    Ok(())
}

/// 3: manifest `GET` by tag with `wrk`, 64 keep-alive connections; and `GET /v2/` the same
/// way, the cheapest request each server has (what its HTTP/TLS stack allows).
pub async fn manifest_get(ctx: &Ctx, report: &mut Report, servers: &mut [Server]) -> ApiResult<()> {
    let Some(wrk) = &ctx.wrk else {
        return Ok(());
    };
    let path = format!("/v2/{}/manifests/latest", ctx.pop.hot_repo());
    for s in servers.iter() {
        // Warm-up and check: the right manifest comes back.
        let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
        let r = api.get(&path, Some(MANIFEST_ACCEPT), 200).await?;
        let d = crate::api::header(&r, "docker-content-digest");
        let _ = r.bytes().await;
        if d.as_deref() != Some(ctx.pop.manifest_digest.as_str()) {
            return Err(format!("{}: GET {path}: digest {d:?}", s.kind));
        }
        let w = crate::wrk::run(
            wrk,
            &ctx.work_dir,
            s,
            std::slice::from_ref(&path),
            Some(MANIFEST_ACCEPT),
            ctx.s.manifest_connections,
            ctx.s.wrk_time,
        )
        .await?;
        if w.errors > 0 {
            return Err(format!(
                "{}: manifest GET: {} of {} requests failed",
                s.kind, w.errors, w.requests
            ));
        }
        report.add("manifest_rps", s.kind, w.rps);
        report.add("manifest_p50", s.kind, w.p50_ms);
        report.add("manifest_p99", s.kind, w.p99_ms);
    }
    for s in servers.iter() {
        let w = crate::wrk::run(
            wrk,
            &ctx.work_dir,
            s,
            &["/v2/".to_owned()],
            None,
            ctx.s.manifest_connections,
            ctx.s.wrk_short_time,
        )
        .await?;
        if w.errors > 0 {
            return Err(format!(
                "{}: GET /v2/: {} of {} requests failed",
                s.kind, w.errors, w.requests
            ));
        }
        report.add("base_rps", s.kind, w.rps);
    }
    Ok(())
}

/// The small images of one round (the same bytes for every server in that round; new bytes
/// each round, so nothing is ever already there).
pub async fn make_images(ctx: &Ctx, round: usize) -> Vec<Image> {
    let pool = ctx.pool.clone();
    let (n, lo, hi) = (ctx.s.images, ctx.s.layer_min, ctx.s.layer_max);
    tokio::task::spawn_blocking(move || {
        let mut rng = Rng::new(round as u64 + 1);
        (0..n)
            .map(|i| {
                let config = serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "config": {"Labels": {"round": round.to_string(), "image": i.to_string()}},
                }))
                .unwrap();
                let layers = (0..3)
                    .map(|k| {
                        let len = rng.range(lo, hi);
                        Synth::new(&pool, &format!("round {round} image {i} layer {k}"), len)
                    })
                    .collect();
                Image::new(config, layers)
            })
            .collect()
    })
    .await
    .expect("making images")
}

/// 4 (and 6, peak RSS during it): all images pushed at once, each to its own repository,
/// blobs of one image concurrently, docker-style (HEAD, POST, streamed PATCH, PUT), then its
/// manifest.
pub async fn small_images(
    ctx: &Ctx,
    report: &mut Report,
    servers: &mut [Server],
    round: usize,
    images: &[Image],
) -> ApiResult<()> {
    let tag = format!("round-{round}");
    for s in servers.iter() {
        let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
        let sampler = RssSampler::start(s.pid());
        let t = Instant::now();
        let pushes = images.iter().enumerate().map(|(i, img)| {
            let api = api.clone();
            let tag = tag.clone();
            async move { img.push(&api, &format!("bench/small-{i:02}"), &tag).await }
        });
        let results = futures_util::future::join_all(pushes).await;
        let took = t.elapsed();
        let peak = sampler.finish().await;
        for r in results {
            r.map_err(|e| format!("{}: {e}", s.kind))?;
        }
        report.add(
            "small_images",
            s.kind,
            images.len() as f64 / took.as_secs_f64(),
        );
        report.add("peak_rss_small", s.kind, peak);
    }
    for s in servers.iter() {
        for img in images {
            for (_, d) in &img.blobs {
                s.forget_blob(d);
            }
        }
    }
    Ok(())
}

/// 5: catalog pages and tag-list pages (`n=100`, cycling through `last=` positions).
pub async fn listing(ctx: &Ctx, report: &mut Report, servers: &mut [Server]) -> ApiResult<()> {
    let Some(wrk) = &ctx.wrk else {
        return Ok(());
    };
    let max_pages = 1000;
    for (id, paths) in [
        ("catalog_rps", ctx.pop.catalog_pages(max_pages)),
        ("tags_rps", ctx.pop.tag_pages(max_pages)),
    ] {
        for s in servers.iter() {
            let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
            let r = api.get(&paths[paths.len() / 2], None, 200).await?;
            let _ = r.bytes().await;
            let w = crate::wrk::run(
                wrk,
                &ctx.work_dir,
                s,
                &paths,
                None,
                ctx.s.list_connections,
                ctx.s.wrk_short_time,
            )
            .await?;
            if w.errors > 0 {
                return Err(format!(
                    "{}: {id}: {} of {} requests failed",
                    s.kind, w.errors, w.requests
                ));
            }
            report.add(id, s.kind, w.rps);
        }
    }
    Ok(())
}

/// 6: peak RSS during many concurrent large uploads (docker-style: one streamed `PATCH`
/// each), and their aggregate throughput.
pub async fn big_uploads(ctx: &Ctx, report: &mut Report, servers: &mut [Server]) -> ApiResult<()> {
    let total: u64 = ctx.uploads.iter().map(|(b, _)| b.len()).sum();
    for s in servers.iter() {
        let api = Api::new(s, Proto::H1, ctx.s.request_timeout);
        let sampler = RssSampler::start(s.pid());
        let t = Instant::now();
        let pushes = ctx.uploads.iter().enumerate().map(|(i, (blob, d))| {
            let api = api.clone();
            async move {
                api.push_streamed(&format!("bench/big-{i:02}"), blob, d)
                    .await
            }
        });
        let results = futures_util::future::join_all(pushes).await;
        let took = t.elapsed();
        let peak = sampler.finish().await;
        for r in results {
            r.map_err(|e| format!("{}: {e}", s.kind))?;
        }
        report.add("peak_rss_uploads", s.kind, peak);
        report.add("uploads_mb_s", s.kind, mb_s(total, took));
        for (_, d) in &ctx.uploads {
            s.forget_blob(d);
        }
    }
    Ok(())
}
