//! Crash consistency: SIGKILL the registry while two dozen chunked uploads and a stream of
//! manifest pushes are in flight, restart it on the same data, and check that nothing
//! acknowledged was lost, nothing half-written is served, and every interrupted upload can
//! be resumed or redone.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const UPLOADS: usize = 24;
const CHUNK: usize = 512 * 1024;

struct Job {
    repo: String,
    data: Vec<u8>,
    digest: String,
    /// Send each PATCH as a slow stream (no Content-Length), so the kill is likely to land
    /// in the middle of a request body.
    streamed: bool,
}

#[derive(Clone, Default, Debug)]
struct Progress {
    upload: Option<reqwest::Url>,
    /// Bytes acknowledged by the last 202's `Range`.
    acked: u64,
    put_sent: bool,
    /// The closing PUT was answered 201.
    completed: bool,
}

struct Shared {
    progress: Mutex<Vec<Progress>>,
    /// Failures seen before the kill: those are server bugs, not crash effects.
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
    completed: AtomicUsize,
}

impl Shared {
    fn fail(&self, what: String) {
        if !self.stop.load(Ordering::SeqCst) {
            self.failures.lock().unwrap().push(what);
        }
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

async fn run_upload(api: Api, i: usize, job: Arc<Job>, shared: Arc<Shared>) {
    let mut rng = Rng::new(7000 + i as u64);
    tokio::time::sleep(Duration::from_millis(rng.range(0, 80))).await;
    if shared.stopped() {
        return;
    }
    let r = match api
        .c
        .post(api.url(&format!("/v2/{}/blobs/uploads/", job.repo)))
        .header("content-length", "0")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return shared.fail(format!("upload {i}: POST failed: {e}")),
    };
    if r.status().as_u16() != 202 {
        return shared.fail(format!("upload {i}: POST -> {}", r.status()));
    }
    let Some(loc) = header(&r, "location") else {
        return shared.fail(format!("upload {i}: POST without Location"));
    };
    let mut upload = api.resolve(&loc);
    shared.progress.lock().unwrap()[i].upload = Some(upload.clone());

    let len = job.data.len();
    let mut off = 0usize;
    while off < len {
        if shared.stopped() {
            return;
        }
        let end = (off + CHUNK).min(len);
        let piece = job.data[off..end].to_vec();
        let body = if job.streamed {
            slow_body(piece, 64 * 1024, 3)
        } else {
            reqwest::Body::from(piece)
        };
        let r = match api
            .c
            .patch(upload.clone())
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{off}-{}", end - 1))
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return shared.fail(format!("upload {i}: PATCH {off}-{} failed: {e}", end - 1))
            }
        };
        if r.status().as_u16() != 202 {
            return shared.fail(format!(
                "upload {i}: PATCH {off}-{} -> {}",
                end - 1,
                r.status()
            ));
        }
        match header(&r, "range").as_deref().and_then(parse_upload_range) {
            Some((0, e)) if e == end as u64 - 1 => {}
            other => {
                return shared.fail(format!(
                    "upload {i}: PATCH to {} answered Range {other:?}",
                    end - 1
                ))
            }
        }
        if let Some(l) = header(&r, "location") {
            upload = api.resolve(&l);
        }
        {
            let mut p = shared.progress.lock().unwrap();
            p[i].acked = end as u64;
            p[i].upload = Some(upload.clone());
        }
        off = end;
        tokio::time::sleep(Duration::from_millis(rng.range(10, 50))).await;
    }
    if shared.stopped() {
        return;
    }
    shared.progress.lock().unwrap()[i].put_sent = true;
    let r = match api
        .c
        .put(Api::with_digest(&upload, &job.digest))
        .header("content-length", "0")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return shared.fail(format!("upload {i}: closing PUT failed: {e}")),
    };
    if r.status().as_u16() != 201 {
        return shared.fail(format!("upload {i}: closing PUT -> {}", r.status()));
    }
    shared.progress.lock().unwrap()[i].completed = true;
    shared.completed.fetch_add(1, Ordering::SeqCst);
}

/// Pushes small manifests (blobs pushed beforehand) one after another until stopped;
/// returns those answered 201.
async fn push_manifests_until_stopped(
    api: Api,
    shared: Arc<Shared>,
    config: Vec<u8>,
    layer: Vec<u8>,
) -> Vec<(String, String, Pushed)> {
    let repo = "crash/during".to_owned();
    let mut acked = Vec::new();
    for n in 0.. {
        if shared.stopped() {
            break;
        }
        let body = manifest_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
            "annotations": {"n": n.to_string()},
        }));
        let tag = format!("t{n}");
        let r = match api
            .c
            .put(api.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => break,
        };
        if r.status().as_u16() != 201 {
            shared.fail(format!("manifest {tag}: PUT -> {}", r.status()));
            break;
        }
        acked.push((
            repo.clone(),
            tag,
            Pushed {
                digest: digest_of(&body),
                bytes: body,
                media_type: OCI_MANIFEST.into(),
            },
        ));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    acked
}

/// Resumes an interrupted upload from the offset the server reports; returns false when
/// the server no longer knows the session (then the caller pushes afresh).
async fn resume(api: &Api, i: usize, job: &Job, upload: &reqwest::Url) -> bool {
    let r = api.c.get(upload.clone()).send().await.unwrap();
    match r.status().as_u16() {
        404 => {
            expect_error(r, 404, &["BLOB_UPLOAD_UNKNOWN"]).await;
            false
        }
        204 => {
            let range =
                header(&r, "range").unwrap_or_else(|| panic!("upload {i}: GET 204 without Range"));
            let upload = header(&r, "location")
                .map(|l| api.resolve(&l))
                .unwrap_or_else(|| upload.clone());
            let (start, end) = parse_upload_range(&range)
                .unwrap_or_else(|| panic!("upload {i}: bad Range {range:?}"));
            assert_eq!(start, 0, "upload {i}: Range {range}");
            let len = job.data.len();
            // `0-0` is how an empty session is reported.
            let mut offset = if end == 0 { 0 } else { end as usize + 1 };
            assert!(
                offset <= len,
                "upload {i}: server reports {offset} bytes of a {len}-byte blob"
            );
            if offset < len {
                let mut r = api
                    .patch_chunk(&upload, offset as u64, &job.data[offset..])
                    .await;
                if r.status().as_u16() == 416 && offset == 0 {
                    // `0-0` may also mean one byte.
                    offset = 1;
                    r = api.patch_chunk(&upload, 1, &job.data[1..]).await;
                }
                let loc = header(&r, "location");
                let st = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                assert_eq!(
                    st,
                    202,
                    "upload {i}: resuming at {offset} -> {st}: {}",
                    String::from_utf8_lossy(&body)
                );
                let upload = loc.map(|l| api.resolve(&l)).unwrap_or(upload);
                let r = api.put_upload(&upload, &job.digest, None).await;
                expect_status(r, 201).await;
            } else {
                let r = api.put_upload(&upload, &job.digest, None).await;
                expect_status(r, 201).await;
            }
            true
        }
        other => {
            let body = r.text().await.unwrap_or_default();
            panic!("upload {i}: GET upload after restart -> {other}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_mid_upload_loses_nothing_acknowledged() {
    let mut server = TestServer::start("");
    let api = Api::new(&server);

    // Manifests acknowledged well before the crash.
    let mut acked_manifests: Vec<(String, String, Pushed)> = Vec::new();
    for i in 0..3u64 {
        let repo = format!("crash/pre{i}");
        let mt = if i % 2 == 0 {
            OCI_MANIFEST
        } else {
            DOCKER_MANIFEST
        };
        let p = api.push_image(&repo, "v1", mt, 500 + i).await;
        acked_manifests.push((repo, "v1".into(), p));
    }
    // Blobs for the manifests pushed during the uploads.
    let config = br#"{"architecture":"amd64","os":"linux","during":true}"#.to_vec();
    let layer = pseudo_random_bytes(600, 20_000);
    api.push_blob("crash/during", &config).await;
    api.push_blob("crash/during", &layer).await;

    let t_start = Instant::now();
    // Each upload is a different window of one random buffer: distinct contents and
    // digests without generating 100 MiB of random data.
    let pool = pseudo_random_bytes(1000, 16 << 20);
    let mut rng = Rng::new(42);
    let jobs: Vec<Arc<Job>> = (0..UPLOADS)
        .map(|i| {
            let size = rng.range(1 << 20, 8 << 20) as usize;
            let start = (i * 331 * 1024 + 17 * i) % (pool.len() - size);
            let data = pool[start..start + size].to_vec();
            Arc::new(Job {
                repo: format!("crash/up{}", i % 6),
                digest: digest_of(&data),
                data,
                streamed: i % 2 == 1,
            })
        })
        .collect();
    let distinct: std::collections::HashSet<&str> =
        jobs.iter().map(|j| j.digest.as_str()).collect();
    assert_eq!(distinct.len(), UPLOADS);
    eprintln!("test data ready after {:?}", t_start.elapsed());
    let shared = Arc::new(Shared {
        progress: Mutex::new(vec![Progress::default(); UPLOADS]),
        failures: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        completed: AtomicUsize::new(0),
    });
    let mut tasks = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        tasks.push(tokio::spawn(run_upload(
            api.clone(),
            i,
            job.clone(),
            shared.clone(),
        )));
    }
    let pusher = tokio::spawn(push_manifests_until_stopped(
        api.clone(),
        shared.clone(),
        config.clone(),
        layer.clone(),
    ));

    // Kill once a few uploads have completed; the big ones are still mid-flight then.
    let t0 = Instant::now();
    while shared.completed.load(Ordering::SeqCst) < 4 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shared.stop.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| server.kill9());
    let killed_after = t0.elapsed();

    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("an upload task did not stop after the kill")
            .expect("an upload task panicked");
    }
    let during = tokio::time::timeout(Duration::from_secs(60), pusher)
        .await
        .expect("the manifest pusher did not stop")
        .expect("the manifest pusher panicked");
    acked_manifests.extend(during);

    let failures = shared.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "failures before the kill:\n{}",
        failures.join("\n")
    );
    let progress = shared.progress.lock().unwrap().clone();
    let completed = progress.iter().filter(|p| p.completed).count();
    let mid = progress
        .iter()
        .filter(|p| !p.completed && p.acked > 0)
        .count();
    eprintln!(
        "killed after {killed_after:?}: {completed} uploads completed, {mid} mid-flight with data, {} manifests acknowledged",
        acked_manifests.len()
    );
    assert!(
        completed < UPLOADS,
        "every upload completed before the kill; the test needs slower uploads"
    );

    tokio::task::block_in_place(|| server.spawn());
    let api = Api::new(&server);

    // (1) Whatever a repository says it has, it has correctly; and every acknowledged
    // blob survived.
    for (i, job) in jobs.iter().enumerate() {
        let r = api
            .head(&format!("/v2/{}/blobs/{}", job.repo, job.digest))
            .await;
        let st = r.status().as_u16();
        let cl = header(&r, "content-length");
        expect_head(r, st).await;
        match st {
            200 => {
                assert_eq!(
                    cl,
                    Some(job.data.len().to_string()),
                    "upload {i}: HEAD Content-Length after restart"
                );
                let got = api.get_blob_bytes(&job.repo, &job.digest).await;
                assert!(
                    got == job.data,
                    "upload {i}: blob content differs after restart"
                );
            }
            404 => assert!(
                !progress[i].completed,
                "upload {i}: blob acknowledged with 201 before the kill is gone after restart"
            ),
            other => panic!("upload {i}: HEAD blob after restart -> {other}"),
        }
    }

    eprintln!("(1) checked after {:?}", t_start.elapsed());
    // (2) Interrupted uploads resume from where the server says, or start over.
    let (mut resumed, mut restarted) = (0, 0);
    for (i, job) in jobs.iter().enumerate() {
        let p = &progress[i];
        if p.completed {
            continue;
        }
        let resumed_ok = match &p.upload {
            Some(u) => resume(&api, i, job, u).await,
            None => false,
        };
        if resumed_ok {
            resumed += 1;
        } else {
            restarted += 1;
            api.push_blob_chunked(&job.repo, &job.data, CHUNK).await;
        }
        let got = api.get_blob_bytes(&job.repo, &job.digest).await;
        assert!(
            got == job.data,
            "upload {i}: content differs after resuming"
        );
    }
    eprintln!("after restart: {resumed} uploads resumed, {restarted} pushed afresh");

    eprintln!("(2) checked after {:?}", t_start.elapsed());
    // (3) Every push, repeated from scratch, succeeds: chunked into the same repository
    // (the blob exists already) and, for some, monolithic into a new one.
    let mut repeats = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let (api, job) = (api.clone(), job.clone());
        repeats.push(tokio::spawn(async move {
            api.push_blob_chunked(&job.repo, &job.data, 3 * CHUNK).await;
            let r = api
                .head(&format!("/v2/{}/blobs/{}", job.repo, job.digest))
                .await;
            assert_eq!(
                header(&r, "content-length"),
                Some(job.data.len().to_string()),
                "upload {i}: re-push"
            );
            expect_head(r, 200).await;
            if i % 4 == 0 {
                let fresh = format!("crash/again{}", i % 3);
                api.push_blob(&fresh, &job.data).await;
                let got = api.get_blob_bytes(&fresh, &job.digest).await;
                assert!(got == job.data, "upload {i}: fresh push reads back wrong");
            }
        }));
    }
    for t in repeats {
        t.await.unwrap();
    }
    eprintln!("(3) checked after {:?}", t_start.elapsed());
    // (4) Every manifest acknowledged before the kill is served byte-identical, with its
    // blobs.
    for (repo, tag, p) in &acked_manifests {
        for reference in [tag.as_str(), p.digest.as_str()] {
            let r = api.get_manifest(repo, reference).await;
            let ct = header(&r, "content-type");
            let body = expect_status(r, 200).await;
            assert!(
                body.as_ref() == p.bytes.as_slice(),
                "{repo}:{reference}: manifest bytes differ after restart"
            );
            assert_eq!(
                ct.as_deref(),
                Some(p.media_type.as_str()),
                "{repo}:{reference}: Content-Type"
            );
        }
        let m: Value = serde_json::from_slice(&p.bytes).unwrap();
        let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
        for l in m["layers"].as_array().unwrap() {
            digests.push(l["digest"].as_str().unwrap().to_owned());
        }
        for d in digests {
            expect_head(api.head(&format!("/v2/{repo}/blobs/{d}")).await, 200).await;
        }
    }
    if acked_manifests
        .iter()
        .any(|(repo, _, _)| repo == "crash/during")
    {
        let r = api.get("/v2/crash/during/tags/list").await;
        let v: Value = serde_json::from_slice(&expect_status(r, 200).await).unwrap();
        let tags: Vec<&str> = v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for (repo, tag, _) in &acked_manifests {
            if repo == "crash/during" {
                assert!(
                    tags.contains(&tag.as_str()),
                    "acknowledged tag {tag} missing from tags/list"
                );
            }
        }
    }
}
