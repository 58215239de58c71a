//! Tests of the filesystem backend against real temp directories.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{stream, StreamExt};

use super::FsStorage;
use crate::registry::names::{Algorithm, Digest, RepoName, Tag};
use crate::storage::{BodyStream, ReferrerRecord, Storage, StorageError, UploadId};

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

fn body(chunks: Vec<Vec<u8>>) -> BodyStream {
    Box::pin(stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn open() -> (tempfile::TempDir, FsStorage) {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    (dir, s)
}

async fn read_stream(s: &FsStorage, d: &Digest, range: Option<(u64, u64)>) -> (u64, u64, Vec<u8>) {
    let r = s.blob_read(d, range).await.unwrap();
    let mut out = Vec::new();
    let mut stream = r.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (r.total_size, r.len, out)
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn blob_put_read_and_ranges() {
    let (_t, s) = open();
    // Larger than a read chunk, and not a multiple of it.
    let data = pattern(3 * (1 << 20) + 12345);
    let d = sha256(&data);
    assert_eq!(s.blob_size(&d).await.unwrap(), None);
    assert!(matches!(
        s.blob_read(&d, None).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.blob_read_all(&d).await,
        Err(StorageError::NotFound)
    ));

    s.blob_put(&d, Bytes::from(data.clone())).await.unwrap();
    s.blob_put(&d, Bytes::from(data.clone())).await.unwrap(); // idempotent
    assert_eq!(s.blob_size(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);
    // Wrong bytes for an existing digest are still refused.
    assert!(matches!(
        s.blob_put(&d, Bytes::from_static(b"nope")).await,
        Err(StorageError::DigestMismatch { .. })
    ));

    let (total, len, all) = read_stream(&s, &d, None).await;
    assert_eq!((total, len), (data.len() as u64, data.len() as u64));
    assert_eq!(all, data);

    let (start, end) = (1_000_000u64, 2_500_001u64);
    let (total, len, part) = read_stream(&s, &d, Some((start, end))).await;
    assert_eq!((total, len), (data.len() as u64, end - start));
    assert_eq!(part, &data[start as usize..end as usize]);

    let (_, len, empty) = read_stream(&s, &d, Some((7, 7))).await;
    assert_eq!((len, empty.len()), (0, 0));

    let past = data.len() as u64 + 1;
    assert!(matches!(
        s.blob_read(&d, Some((0, past))).await,
        Err(StorageError::RangeNotSatisfiable { .. })
    ));
    assert!(matches!(
        s.blob_read(&d, Some((5, 4))).await,
        Err(StorageError::RangeNotSatisfiable { .. })
    ));
    let path = s
        .root()
        .join("blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex());
    assert!(path.is_file());
}

#[tokio::test]
async fn blob_put_digest_mismatch_leaves_nothing() {
    let (t, s) = open();
    let claimed = sha256(b"something else");
    let err = s
        .blob_put(&claimed, Bytes::from_static(b"hello"))
        .await
        .unwrap_err();
    match err {
        StorageError::DigestMismatch { expected, computed } => {
            assert_eq!(expected, claimed);
            assert_eq!(computed, sha256(b"hello"));
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(s.blob_size(&claimed).await.unwrap(), None);
    assert_eq!(count_files(&t.path().join("blobs/sha256")), 0);
    assert_eq!(count_files(&t.path().join("tmp")), 0);
}

#[tokio::test]
async fn upload_in_chunks_then_finish() {
    let (t, s) = open();
    let r = repo("library/app");
    // Many small body chunks crossing several write buffers.
    let data = pattern(2 * (1 << 20) + 777);
    let id = s.upload_start(&r).await.unwrap();
    assert_eq!(id.0.len(), 32);
    assert!(UploadId::parse(&id.0).is_some());
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), 0);

    let (a, rest) = data.split_at(100_000);
    let (b, c) = rest.split_at(1_500_000);
    let n = s
        .upload_append(&r, &id, Some(0), body(vec![a.to_vec()]), u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, a.len() as u64);
    let small: Vec<Vec<u8>> = b.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let n = s
        .upload_append(&r, &id, Some(n), body(small), u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, (a.len() + b.len()) as u64);
    let n = s
        .upload_append(&r, &id, None, body(vec![c.to_vec()]), u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), data.len() as u64);

    let d = sha256(&data);
    assert_eq!(
        s.upload_finish(&r, &id, &d).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);
    assert!(s.blob_linked(&r, &d).await.unwrap());
    assert!(!s.blob_linked(&repo("other"), &d).await.unwrap());
    assert!(!t.path().join("uploads").join(&id.0).exists());
    assert!(matches!(
        s.upload_size(&r, &id).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_finish(&r, &id, &d).await,
        Err(StorageError::NotFound)
    ));
}

#[tokio::test]
async fn empty_upload_finishes() {
    let (_t, s) = open();
    let r = repo("a");
    let id = s.upload_start(&r).await.unwrap();
    let d = sha256(b"");
    assert_eq!(s.upload_finish(&r, &id, &d).await.unwrap(), 0);
    assert_eq!(s.blob_size(&d).await.unwrap(), Some(0));
}

#[tokio::test]
async fn offset_mismatch_writes_nothing() {
    let (t, s) = open();
    let r = repo("a");
    let id = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id, Some(0), body(vec![b"12345".to_vec()]), 100)
        .await
        .unwrap();
    for off in [0, 4, 6] {
        let err = s
            .upload_append(&r, &id, Some(off), body(vec![b"xx".to_vec()]), 100)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::OffsetMismatch { expected: 5, got } if got == off),
            "{err:?}"
        );
    }
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), 5);
    let on_disk = std::fs::read(t.path().join("uploads").join(&id.0).join("data")).unwrap();
    assert_eq!(on_disk, b"12345");
}

#[tokio::test]
async fn upload_is_invisible_from_another_repo() {
    let (_t, s) = open();
    let (mine, theirs) = (repo("mine"), repo("theirs"));
    let id = s.upload_start(&mine).await.unwrap();
    s.upload_append(&mine, &id, None, body(vec![b"abc".to_vec()]), 100)
        .await
        .unwrap();
    let d = sha256(b"abc");
    assert!(matches!(
        s.upload_size(&theirs, &id).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_append(&theirs, &id, None, body(vec![b"x".to_vec()]), 100)
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_finish(&theirs, &id, &d).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_cancel(&theirs, &id).await,
        Err(StorageError::NotFound)
    ));
    // Also when the state is not in memory (after a restart).
    let s2 = FsStorage::open(s.root()).unwrap();
    assert!(matches!(
        s2.upload_size(&theirs, &id).await,
        Err(StorageError::NotFound)
    ));
    // Untouched for the owner.
    assert_eq!(s2.upload_size(&mine, &id).await.unwrap(), 3);
    assert_eq!(s2.upload_finish(&mine, &id, &d).await.unwrap(), 3);
    assert!(!s2.blob_linked(&theirs, &d).await.unwrap());
    // Unknown ids.
    let unknown = UploadId("0".repeat(32));
    assert!(matches!(
        s2.upload_size(&mine, &unknown).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s2.upload_cancel(&mine, &unknown).await,
        Err(StorageError::NotFound)
    ));
    // Ids not of our shape never reach the filesystem.
    let evil = UploadId("../../repositories/mine".into());
    assert!(matches!(
        s2.upload_size(&mine, &evil).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s2.upload_cancel(&mine, &evil).await,
        Err(StorageError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_append_leaves_a_consistent_session() {
    let (_t, s) = open();
    let r = repo("a");
    let data = pattern(5 << 20);
    let id = s.upload_start(&r).await.unwrap();
    // A client that sends 3 MiB and then stalls; its request is dropped mid-append.
    let head: Vec<std::io::Result<Bytes>> = data[..3 << 20]
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stalled: BodyStream = Box::pin(stream::iter(head).chain(stream::pending()));
    let task = {
        let (s, r, id) = (s.clone(), r.clone(), id.clone());
        tokio::spawn(async move { s.upload_append(&r, &id, None, stalled, u64::MAX).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    // Whatever landed is a prefix the client can resume from, and the hash agrees with it.
    let n = s.upload_size(&r, &id).await.unwrap();
    assert!(n <= 3 << 20);
    let rest = data[n as usize..].to_vec();
    s.upload_append(&r, &id, Some(n), body(vec![rest]), u64::MAX)
        .await
        .unwrap();
    let d = sha256(&data);
    assert_eq!(
        s.upload_finish(&r, &id, &d).await.unwrap(),
        data.len() as u64
    );
}

#[tokio::test]
async fn upload_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("x/y");
    let data = pattern(1_300_000);
    let (a, b) = data.split_at(654_321);
    let id = {
        let s = FsStorage::open(dir.path()).unwrap();
        let id = s.upload_start(&r).await.unwrap();
        s.upload_append(&r, &id, Some(0), body(vec![a.to_vec()]), u64::MAX)
            .await
            .unwrap();
        id
    };
    let s = FsStorage::open(dir.path()).unwrap();
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), a.len() as u64);
    let n = s
        .upload_append(
            &r,
            &id,
            Some(a.len() as u64),
            body(vec![b.to_vec()]),
            u64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(n, data.len() as u64);
    let d = sha256(&data);
    assert_eq!(
        s.upload_finish(&r, &id, &d).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);

    // Finishing straight after a restart (state rebuilt inside finish).
    let id2 = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id2, None, body(vec![b"tail".to_vec()]), 100)
        .await
        .unwrap();
    drop(s);
    let s = FsStorage::open(dir.path()).unwrap();
    let d2 = sha256(b"tail");
    assert_eq!(s.upload_finish(&r, &id2, &d2).await.unwrap(), 4);
}

#[tokio::test]
async fn limit_and_body_errors_keep_a_valid_prefix() {
    let (_t, s) = open();
    let r = repo("a");
    let id = s.upload_start(&r).await.unwrap();
    let err = s
        .upload_append(
            &r,
            &id,
            None,
            body(vec![b"12345678".to_vec(), b"9abcd".to_vec()]),
            10,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooLarge { limit: 10 }),
        "{err:?}"
    );
    let size = s.upload_size(&r, &id).await.unwrap();
    assert_eq!(size, 8);
    let err = s
        .upload_append(&r, &id, Some(8), body(vec![b"xyz".to_vec()]), 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { .. }));
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), 8);

    let failing: BodyStream = Box::pin(stream::iter(vec![
        Ok(Bytes::from_static(b"90")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "gone",
        )),
        Ok(Bytes::from_static(b"never")),
    ]));
    let err = s
        .upload_append(&r, &id, Some(8), failing, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Body(ref m) if m.contains("gone")),
        "{err:?}"
    );
    assert_eq!(s.upload_size(&r, &id).await.unwrap(), 10);
    let d = sha256(b"1234567890");
    assert_eq!(s.upload_finish(&r, &id, &d).await.unwrap(), 10);
}

#[tokio::test]
async fn digest_mismatch_on_finish_removes_session() {
    let (t, s) = open();
    let r = repo("a");
    let id = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id, None, body(vec![b"abc".to_vec()]), 100)
        .await
        .unwrap();
    let wrong = sha256(b"abd");
    let err = s.upload_finish(&r, &id, &wrong).await.unwrap_err();
    assert!(
        matches!(err, StorageError::DigestMismatch { ref computed, .. } if *computed == sha256(b"abc")),
        "{err:?}"
    );
    assert_eq!(s.blob_size(&wrong).await.unwrap(), None);
    assert_eq!(s.blob_size(&sha256(b"abc")).await.unwrap(), None);
    assert!(matches!(
        s.upload_size(&r, &id).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(count_files(&t.path().join("uploads")), 0);
    assert!(!s.blob_linked(&r, &wrong).await.unwrap());
}

#[tokio::test]
async fn cancel_removes_session() {
    let (t, s) = open();
    let r = repo("a");
    let id = s.upload_start(&r).await.unwrap();
    s.upload_cancel(&r, &id).await.unwrap();
    assert!(matches!(
        s.upload_size(&r, &id).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_cancel(&r, &id).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(count_files(&t.path().join("uploads")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_commit_the_same_blob() {
    let (_t, s) = open();
    let data = pattern(3 << 20);
    let d = sha256(&data);
    let (r1, r2) = (repo("one"), repo("two"));
    let id1 = s.upload_start(&r1).await.unwrap();
    let id2 = s.upload_start(&r2).await.unwrap();
    let push = |r: RepoName, id: UploadId| {
        let (s, data, d) = (s.clone(), data.clone(), d.clone());
        tokio::spawn(async move {
            s.upload_append(&r, &id, Some(0), body(vec![data]), u64::MAX)
                .await?;
            s.upload_finish(&r, &id, &d).await
        })
    };
    let (a, b) = tokio::join!(push(r1.clone(), id1), push(r2.clone(), id2));
    assert_eq!(a.unwrap().unwrap(), data.len() as u64);
    assert_eq!(b.unwrap().unwrap(), data.len() as u64);
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);
    assert!(s.blob_linked(&r1, &d).await.unwrap());
    assert!(s.blob_linked(&r2, &d).await.unwrap());
}

#[tokio::test]
async fn purge_removes_only_old_sessions() {
    let (t, s) = open();
    let r = repo("a");
    let old = s.upload_start(&r).await.unwrap();
    let fresh = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &old, None, body(vec![b"abc".to_vec()]), 100)
        .await
        .unwrap();
    let data = t.path().join("uploads").join(&old.0).join("data");
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(f);
    // A stale temp file from an interrupted write.
    let stale = t.path().join("tmp").join("f".repeat(32));
    let f = std::fs::File::create(&stale).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(f);

    assert_eq!(s.uploads_purge(Duration::from_secs(3600)).await.unwrap(), 1);
    assert!(matches!(
        s.upload_size(&r, &old).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.upload_size(&r, &fresh).await.unwrap(), 0);
    assert!(!stale.exists());
    assert_eq!(s.uploads_purge(Duration::from_secs(3600)).await.unwrap(), 0);
}

#[tokio::test]
async fn links() {
    let (_t, s) = open();
    let r = repo("a/b");
    let d = sha256(b"x");
    assert!(!s.blob_linked(&r, &d).await.unwrap());
    s.link_blob(&r, &d).await.unwrap();
    s.link_blob(&r, &d).await.unwrap();
    assert!(s.blob_linked(&r, &d).await.unwrap());
    assert!(!s.manifest_linked(&r, &d).await.unwrap());
    s.unlink_blob(&r, &d).await.unwrap();
    assert!(!s.blob_linked(&r, &d).await.unwrap());
    assert!(matches!(
        s.unlink_blob(&r, &d).await,
        Err(StorageError::NotFound)
    ));

    s.link_manifest(&r, &d).await.unwrap();
    s.link_manifest(&r, &d).await.unwrap();
    assert!(s.manifest_linked(&r, &d).await.unwrap());
    assert!(!s.manifest_linked(&repo("a"), &d).await.unwrap());
    s.unlink_manifest(&r, &d).await.unwrap();
    assert!(matches!(
        s.unlink_manifest(&r, &d).await,
        Err(StorageError::NotFound)
    ));
}

#[tokio::test]
async fn catalog_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    let d = sha256(b"m");
    for name in ["b", "a", "a/c", "d/e/f", "a/c/d"] {
        s.link_manifest(&repo(name), &d).await.unwrap();
    }
    // Blobs alone do not make a repository.
    s.link_blob(&repo("z"), &d).await.unwrap();

    assert_eq!(s.repositories(None, 2).await.unwrap(), ["a", "a/c"]);
    assert_eq!(
        s.repositories(Some("a/c"), 2).await.unwrap(),
        ["a/c/d", "b"]
    );
    assert_eq!(s.repositories(Some("b"), 10).await.unwrap(), ["d/e/f"]);
    assert!(s.repositories(Some("d/e/f"), 10).await.unwrap().is_empty());
    assert!(s.repositories(None, 0).await.unwrap().is_empty());

    // After the index is built, new repositories join it (by manifest or by tag).
    s.link_manifest(&repo("c"), &d).await.unwrap();
    s.tag_put(&repo("aa"), &tag("v1"), &d).await.unwrap();
    assert_eq!(
        s.repositories(None, 100).await.unwrap(),
        ["a", "a/c", "a/c/d", "aa", "b", "c", "d/e/f"]
    );

    // A fresh process rebuilds the same list from disk.
    let s2 = FsStorage::open(dir.path()).unwrap();
    assert_eq!(
        s2.repositories(Some("aa"), 100).await.unwrap(),
        ["b", "c", "d/e/f"]
    );
}

#[tokio::test]
async fn tags() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    let r = repo("app");
    let (d1, d2) = (sha256(b"1"), sha256(b"2"));
    assert!(matches!(
        s.tags_list(&r, None, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(s.tags_for(&r, &d1).await.unwrap().is_empty());
    assert_eq!(s.tag_get(&r, &tag("latest")).await.unwrap(), None);

    assert!(matches!(
        s.tag_delete(&r, &tag("latest")).await,
        Err(StorageError::NotFound)
    ));

    s.link_manifest(&r, &d1).await.unwrap();
    assert!(s.tags_list(&r, None, 10).await.unwrap().is_empty());

    for t in ["v2", "latest", "v1", "A", "_x"] {
        s.tag_put(&r, &tag(t), &d1).await.unwrap();
    }
    assert_eq!(s.tags_list(&r, None, 2).await.unwrap(), ["A", "_x"]);
    assert_eq!(
        s.tags_list(&r, Some("_x"), 2).await.unwrap(),
        ["latest", "v1"]
    );
    assert_eq!(s.tags_list(&r, Some("v1"), 2).await.unwrap(), ["v2"]);
    assert_eq!(s.tag_get(&r, &tag("v1")).await.unwrap(), Some(d1.clone()));

    // Re-point one tag; the cached listing and tags_for follow.
    s.tag_put(&r, &tag("latest"), &d2).await.unwrap();
    assert_eq!(
        s.tag_get(&r, &tag("latest")).await.unwrap(),
        Some(d2.clone())
    );
    let mut for_d1: Vec<String> = s
        .tags_for(&r, &d1)
        .await
        .unwrap()
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    for_d1.sort();
    assert_eq!(for_d1, ["A", "_x", "v1", "v2"]);
    assert_eq!(s.tags_for(&r, &d2).await.unwrap(), [tag("latest")]);

    s.tag_delete(&r, &tag("v1")).await.unwrap();
    assert!(matches!(
        s.tag_delete(&r, &tag("v1")).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.tag_get(&r, &tag("v1")).await.unwrap(), None);
    assert_eq!(
        s.tags_list(&r, None, 100).await.unwrap(),
        ["A", "_x", "latest", "v2"]
    );

    // A fresh process reads the same from disk.
    let s2 = FsStorage::open(dir.path()).unwrap();
    assert_eq!(
        s2.tags_list(&r, Some("A"), 100).await.unwrap(),
        ["_x", "latest", "v2"]
    );
    assert_eq!(s2.tags_for(&r, &d2).await.unwrap(), [tag("latest")]);
}

#[tokio::test]
async fn referrers() {
    let (_t, s) = open();
    let r = repo("app");
    let subject = sha256(b"subject");
    assert!(s.referrers(&r, &subject).await.unwrap().is_empty());
    let mut digests: Vec<Digest> = (0..3)
        .map(|i| sha256(format!("ref{i}").as_bytes()))
        .collect();
    digests.push(Digest::of(Algorithm::Sha512, b"ref-512"));
    for d in digests.iter().rev() {
        let json = format!(r#"{{"digest":"{d}"}}"#);
        let record = ReferrerRecord {
            digest: d.clone(),
            descriptor_json: Bytes::from(json),
        };
        s.referrer_add(&r, &subject, record.clone()).await.unwrap();
        s.referrer_add(&r, &subject, record).await.unwrap();
    }
    let got = s.referrers(&r, &subject).await.unwrap();
    let mut want = digests.clone();
    want.sort();
    assert_eq!(
        got.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
        want
    );
    for rec in &got {
        let v: serde_json::Value = serde_json::from_slice(&rec.descriptor_json).unwrap();
        assert_eq!(v["digest"], rec.digest.to_string());
    }
    // Other repositories and subjects see nothing.
    assert!(s
        .referrers(&repo("other"), &subject)
        .await
        .unwrap()
        .is_empty());
    assert!(s.referrers(&r, &sha256(b"x")).await.unwrap().is_empty());

    s.referrer_remove(&r, &subject, &want[0]).await.unwrap();
    assert!(matches!(
        s.referrer_remove(&r, &subject, &want[0]).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.referrers(&r, &subject).await.unwrap().len(), 3);
}

#[tokio::test]
async fn sha512_upload() {
    let (t, s) = open();
    let r = repo("a");
    let data = pattern(1_500_000);
    let d = Digest::of(Algorithm::Sha512, &data);
    let id = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id, None, body(vec![data.clone()]), u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        s.upload_finish(&r, &id, &d).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);
    assert!(t
        .path()
        .join("blobs/sha512")
        .join(&d.hex()[..2])
        .join(d.hex())
        .is_file());
    assert!(s.blob_linked(&r, &d).await.unwrap());

    // A wrong sha512 claim fails and removes the session.
    let id = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id, None, body(vec![b"abc".to_vec()]), 100)
        .await
        .unwrap();
    let wrong = Digest::of(Algorithm::Sha512, b"abd");
    assert!(matches!(
        s.upload_finish(&r, &id, &wrong).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert!(matches!(
        s.upload_size(&r, &id).await,
        Err(StorageError::NotFound)
    ));
    // blob_put checks sha512 too.
    assert!(matches!(
        s.blob_put(&wrong, Bytes::from_static(b"abc")).await,
        Err(StorageError::DigestMismatch { .. })
    ));
}

/// Throughput of `blob_read` from page cache; run with
/// `cargo test --release -- --ignored --nocapture read_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn read_throughput() {
    let (_t, s) = open();
    let data = pattern(512 << 20);
    let d = sha256(&data);
    s.blob_put(&d, Bytes::from(data)).await.unwrap();
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let r = s.blob_read(&d, None).await.unwrap();
        let mut stream = r.stream;
        let mut n = 0usize;
        while let Some(c) = stream.next().await {
            n += c.unwrap().len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "read {} MiB in {secs:.3}s: {:.2} GB/s",
            n >> 20,
            n as f64 / secs / 1e9
        );
    }
}
