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
async fn upload_spanning_write_behind_windows_is_intact() {
    // Writeback starts on the blocking pool while later bytes are still being written:
    // the committed blob must be exactly what was sent.
    let (_t, s) = open();
    let r = repo("library/big");
    let data = pattern(13 * (1 << 20) + 4321);
    let id = s.upload_start(&r).await.unwrap();
    let mut at = 0u64;
    for part in data.chunks(5 << 20) {
        let pieces: Vec<Vec<u8>> = part.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        at = s
            .upload_append(&r, &id, Some(at), body(pieces), u64::MAX)
            .await
            .unwrap();
    }
    assert_eq!(at, data.len() as u64);
    let d = sha256(&data);
    assert_eq!(s.upload_finish(&r, &id, &d).await.unwrap(), at);
    assert_eq!(s.blob_read_all(&d).await.unwrap(), data);
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

/// A link is a file named by the digest, holding the digest string, written in place (no
/// temp file left in `tmp/`); its existence is the record, so an empty one (what a crash
/// can leave, its content not being fsynced) still links, and an upload committing over it
/// keeps it.
#[tokio::test]
async fn links_are_named_files_and_count_even_when_empty() {
    let (t, s) = open();
    let r = repo("a/b");
    let data = b"layer".to_vec();
    let d = sha256(&data);
    s.link_blob(&r, &d).await.unwrap();
    let link = t
        .path()
        .join("repositories/a/b/_layers/sha256")
        .join(d.hex());
    assert_eq!(std::fs::read_to_string(&link).unwrap(), d.to_string());
    s.link_manifest(&r, &d).await.unwrap();
    let revision = t
        .path()
        .join("repositories/a/b/_manifests/revisions/sha256")
        .join(d.hex());
    assert_eq!(std::fs::read_to_string(&revision).unwrap(), d.to_string());
    assert_eq!(count_files(&t.path().join("tmp")), 0);

    // As after a crash that kept the directory entry but not the content.
    std::fs::write(&link, b"").unwrap();
    std::fs::write(&revision, b"").unwrap();
    assert!(s.blob_linked(&r, &d).await.unwrap());
    assert!(s.manifest_linked(&r, &d).await.unwrap());
    let id = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &id, None, body(vec![data.clone()]), u64::MAX)
        .await
        .unwrap();
    s.upload_finish(&r, &id, &d).await.unwrap();
    assert!(s.blob_linked(&r, &d).await.unwrap());
    assert_eq!(read_stream(&s, &d, None).await.2, data);
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

/// What a push leaves: a layer blob linked, a manifest blob linked and tagged. Returns the
/// manifest's and the layer's digests.
async fn push(s: &FsStorage, r: &RepoName, t: &str, content: &str) -> (Digest, Digest) {
    let layer = format!("layer of {content}").into_bytes();
    let ld = sha256(&layer);
    s.blob_put(&ld, Bytes::from(layer)).await.unwrap();
    s.link_blob(r, &ld).await.unwrap();
    let manifest = format!(r#"{{"layers":["{ld}"],"c":"{content}"}}"#).into_bytes();
    let md = sha256(&manifest);
    s.blob_put(&md, Bytes::from(manifest)).await.unwrap();
    s.link_manifest(r, &md).await.unwrap();
    s.tag_put(r, &tag(t), &md).await.unwrap();
    (md, ld)
}

fn referrer(d: &Digest) -> ReferrerRecord {
    ReferrerRecord {
        digest: d.clone(),
        descriptor_json: Bytes::from(format!(r#"{{"digest":"{d}"}}"#)),
    }
}

/// Sets a file's or directory's modification time into the past.
fn age(path: &std::path::Path, secs: u64) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[tokio::test]
async fn delete_repository_removes_links_tags_and_referrers() {
    let (t, s) = open();
    let (app, other) = (repo("team/app"), repo("other"));
    let (md, ld) = push(&s, &app, "v1", "one").await;
    let (md2, _) = push(&s, &app, "v2", "two").await;
    s.tag_put(&app, &tag("latest"), &md2).await.unwrap();
    let sig = sha256(b"signature manifest");
    s.referrer_add(&app, &md, referrer(&sig)).await.unwrap();
    let (omd, old) = push(&s, &other, "v1", "one").await;
    // Fill the indexes first: the delete must correct them, not only the disk.
    assert_eq!(
        s.repositories(None, 10).await.unwrap(),
        ["other", "team/app"]
    );
    assert_eq!(
        s.tags_list(&app, None, 10).await.unwrap(),
        ["latest", "v1", "v2"]
    );

    assert!(s.delete_repository(&app).await.unwrap());

    assert_eq!(s.repositories(None, 10).await.unwrap(), ["other"]);
    assert!(matches!(
        s.tags_list(&app, None, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(s.tags_for(&app, &md).await.unwrap().is_empty());
    assert_eq!(s.tag_get(&app, &tag("v1")).await.unwrap(), None);
    assert!(!s.manifest_linked(&app, &md).await.unwrap());
    assert!(!s.manifest_linked(&app, &md2).await.unwrap());
    assert!(!s.blob_linked(&app, &ld).await.unwrap());
    assert!(s.referrers(&app, &md).await.unwrap().is_empty());
    // Content stays for garbage collection; another repository keeps everything.
    for d in [&md, &md2, &ld] {
        assert!(s.blob_size(d).await.unwrap().is_some(), "{d}");
    }
    assert!(s.manifest_linked(&other, &omd).await.unwrap());
    assert!(s.blob_linked(&other, &old).await.unwrap());
    assert_eq!(s.tags_list(&other, None, 10).await.unwrap(), ["v1"]);
    // Nothing left on disk: no directory of it, the parent `team` pruned, tmp emptied.
    assert!(!t.path().join("repositories/team").exists());
    assert!(t.path().join("repositories/other").is_dir());
    assert_eq!(count_files(&t.path().join("tmp")), 0);
    // A fresh process (catalog built by scanning) agrees.
    let s2 = FsStorage::open(t.path()).unwrap();
    assert_eq!(s2.repositories(None, 10).await.unwrap(), ["other"]);
    assert!(matches!(
        s2.tags_list(&app, None, 10).await,
        Err(StorageError::NotFound)
    ));
    // Deleting again finds nothing.
    assert!(!s.delete_repository(&app).await.unwrap());
}

#[tokio::test]
async fn delete_before_the_catalog_is_built() {
    let (t, s) = open();
    push(&s, &repo("a"), "v1", "a").await;
    push(&s, &repo("b"), "v1", "b").await;
    assert!(s.delete_repository(&repo("a")).await.unwrap());
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["b"]);
    assert!(!t.path().join("repositories/a").exists());
}

#[tokio::test]
async fn delete_leaves_nested_repositories() {
    let (t, s) = open();
    let (a, ab, abc) = (repo("a"), repo("a/b"), repo("a/b/c"));
    let (amd, ald) = push(&s, &a, "va", "a").await;
    let (abmd, abld) = push(&s, &ab, "vab", "ab").await;
    push(&s, &abc, "vabc", "abc").await;
    assert_eq!(
        s.repositories(None, 10).await.unwrap(),
        ["a", "a/b", "a/b/c"]
    );

    // Deleting `a` leaves `a/b` and `a/b/c`, and the directory holding them.
    assert!(s.delete_repository(&a).await.unwrap());
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["a/b", "a/b/c"]);
    assert!(matches!(
        s.tags_list(&a, None, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(!s.manifest_linked(&a, &amd).await.unwrap());
    assert!(!s.blob_linked(&a, &ald).await.unwrap());
    assert_eq!(s.tags_list(&ab, None, 10).await.unwrap(), ["vab"]);
    assert!(s.manifest_linked(&ab, &abmd).await.unwrap());
    assert!(s.blob_linked(&ab, &abld).await.unwrap());
    assert_eq!(s.tags_list(&abc, None, 10).await.unwrap(), ["vabc"]);
    assert!(t.path().join("repositories/a/b/_manifests").is_dir());
    assert!(!t.path().join("repositories/a/_manifests").exists());
    // The parent is not a repository, so deleting it finds nothing and touches nothing.
    assert!(!s.delete_repository(&a).await.unwrap());
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["a/b", "a/b/c"]);

    // Deleting `a/b` leaves `a` (pushed again) and `a/b/c`.
    push(&s, &a, "va", "a").await;
    assert!(s.delete_repository(&ab).await.unwrap());
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["a", "a/b/c"]);
    assert_eq!(s.tags_list(&a, None, 10).await.unwrap(), ["va"]);
    assert_eq!(s.tags_list(&abc, None, 10).await.unwrap(), ["vabc"]);
    assert!(matches!(
        s.tags_list(&ab, None, 10).await,
        Err(StorageError::NotFound)
    ));

    // Deleting the innermost prunes the directories that held only it, not `a`'s.
    assert!(s.delete_repository(&abc).await.unwrap());
    assert!(!t.path().join("repositories/a/b").exists());
    assert!(t.path().join("repositories/a/_manifests").is_dir());
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["a"]);
    assert!(s.delete_repository(&a).await.unwrap());
    assert_eq!(count_files(&t.path().join("repositories")), 0);
    assert!(t.path().join("repositories").is_dir());
    let s2 = FsStorage::open(t.path()).unwrap();
    assert!(s2.repositories(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_unknown_repository_is_false() {
    let (t, s) = open();
    assert!(!s.delete_repository(&repo("nothing")).await.unwrap());
    assert!(!s.delete_repository(&repo("no/such/thing")).await.unwrap());
    assert_eq!(count_files(&t.path().join("tmp")), 0);
    assert_eq!(count_files(&t.path().join("repositories")), 0);
}

#[tokio::test]
async fn push_again_after_delete_starts_from_scratch() {
    let (_t, s) = open();
    let r = repo("app");
    let (md1, ld1) = push(&s, &r, "v1", "one").await;
    s.tag_put(&r, &tag("latest"), &md1).await.unwrap();
    s.referrer_add(&r, &md1, referrer(&sha256(b"sig")))
        .await
        .unwrap();
    assert_eq!(s.tags_list(&r, None, 10).await.unwrap(), ["latest", "v1"]);
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["app"]);
    assert!(s.delete_repository(&r).await.unwrap());

    let (md2, ld2) = push(&s, &r, "v2", "two").await;
    assert_eq!(s.repositories(None, 10).await.unwrap(), ["app"]);
    assert_eq!(s.tags_list(&r, None, 10).await.unwrap(), ["v2"]);
    assert_eq!(s.tags_for(&r, &md1).await.unwrap(), Vec::<Tag>::new());
    assert_eq!(s.tags_for(&r, &md2).await.unwrap(), [tag("v2")]);
    assert_eq!(s.tag_get(&r, &tag("latest")).await.unwrap(), None);
    assert!(s.manifest_linked(&r, &md2).await.unwrap());
    assert!(s.blob_linked(&r, &ld2).await.unwrap());
    assert!(!s.manifest_linked(&r, &md1).await.unwrap());
    assert!(!s.blob_linked(&r, &ld1).await.unwrap());
    assert!(s.referrers(&r, &md1).await.unwrap().is_empty());
    // The old blob can simply be linked again: its content was kept.
    s.link_blob(&r, &ld1).await.unwrap();
    assert!(s.blob_linked(&r, &ld1).await.unwrap());
}

#[tokio::test]
async fn delete_cancels_idle_upload_sessions() {
    let (t, s) = open();
    let (r, nested) = (repo("app"), repo("app/sub"));
    push(&s, &r, "v1", "one").await;
    let mine = s.upload_start(&r).await.unwrap();
    s.upload_append(&r, &mine, None, body(vec![b"abc".to_vec()]), 100)
        .await
        .unwrap();
    let theirs = s.upload_start(&nested).await.unwrap();
    // One session known only from disk, as after a restart.
    let s = FsStorage::open(t.path()).unwrap();
    let fresh = s.upload_start(&r).await.unwrap();

    assert!(s.delete_repository(&r).await.unwrap());
    for id in [&mine, &fresh] {
        assert!(matches!(
            s.upload_size(&r, id).await,
            Err(StorageError::NotFound)
        ));
        assert!(!t.path().join("uploads").join(&id.0).exists());
    }
    // A session of the nested repository is not this repository's.
    assert_eq!(s.upload_size(&nested, &theirs).await.unwrap(), 0);
    // Sessions alone are no repository.
    let lone = s.upload_start(&repo("lone")).await.unwrap();
    assert!(!s.delete_repository(&repo("lone")).await.unwrap());
    assert!(matches!(
        s.upload_size(&repo("lone"), &lone).await,
        Err(StorageError::NotFound)
    ));
}

/// A session busy with a request while the repository is deleted survives; finishing it
/// afterwards starts a new repository holding only that blob link (documented on the trait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_busy_during_delete_relinks_only_its_blob() {
    let (_t, s) = open();
    let r = repo("app");
    let (md, _) = push(&s, &r, "v1", "one").await;
    let id = s.upload_start(&r).await.unwrap();
    let head: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"part"))];
    let stalled: BodyStream = Box::pin(stream::iter(head).chain(stream::pending()));
    let task = {
        let (s, r, id) = (s.clone(), r.clone(), id.clone());
        tokio::spawn(async move { s.upload_append(&r, &id, None, stalled, u64::MAX).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.delete_repository(&r).await.unwrap());
    task.abort();
    let _ = task.await;

    let n = s.upload_size(&r, &id).await.unwrap();
    let d = sha256(&b"part"[..n as usize]);
    assert_eq!(s.upload_finish(&r, &id, &d).await.unwrap(), n);
    assert!(s.blob_linked(&r, &d).await.unwrap());
    assert!(!s.manifest_linked(&r, &md).await.unwrap());
    assert!(matches!(
        s.tags_list(&r, None, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(s.repositories(None, 10).await.unwrap().is_empty());
}

/// A crash after `_manifests` left: the repository is already invisible, deleting again
/// removes the rest, and purge removes the tree the crash left in `tmp/`.
#[tokio::test]
async fn interrupted_delete_is_finished_and_its_leftovers_purged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r = repo("app");
    let (md, ld) = {
        let s = FsStorage::open(root).unwrap();
        let (md, ld) = push(&s, &r, "v1", "one").await;
        s.referrer_add(&r, &md, referrer(&sha256(b"sig")))
            .await
            .unwrap();
        (md, ld)
    };
    let trash = root.join("tmp").join(format!("delete-{}", "0".repeat(32)));
    std::fs::create_dir(&trash).unwrap();
    std::fs::rename(
        root.join("repositories/app/_manifests"),
        trash.join("_manifests"),
    )
    .unwrap();
    age(&trash, 7200);
    // A delete still removing its tree right now: young, so purge leaves it.
    let busy = root.join("tmp").join(format!("delete-{}", "1".repeat(32)));
    std::fs::create_dir_all(busy.join("_layers")).unwrap();

    let s = FsStorage::open(root).unwrap();
    assert!(s.repositories(None, 10).await.unwrap().is_empty());
    assert!(matches!(
        s.tags_list(&r, None, 10).await,
        Err(StorageError::NotFound)
    ));
    assert!(!s.manifest_linked(&r, &md).await.unwrap());
    assert!(s.blob_linked(&r, &ld).await.unwrap());

    assert!(s.delete_repository(&r).await.unwrap());
    assert!(!s.blob_linked(&r, &ld).await.unwrap());
    assert!(s.referrers(&r, &md).await.unwrap().is_empty());
    assert!(!root.join("repositories/app").exists());

    assert_eq!(s.uploads_purge(Duration::from_secs(3600)).await.unwrap(), 0);
    assert!(!trash.exists());
    assert!(busy.is_dir());
}

/// Pushes racing deletes: whatever the interleaving, the in-memory catalog and tag set end
/// up saying what the disk says (checked against a fresh process that reads only the disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_racing_pushes_keep_the_indexes_true() {
    let (t, s) = open();
    let r = repo("busy");
    let d = sha256(b"m");
    s.blob_put(&d, Bytes::from_static(b"m")).await.unwrap();
    for round in 0..20 {
        // Build both indexes, so there is something to keep in step.
        s.repositories(None, 10).await.unwrap();
        let _ = s.tags_list(&r, None, 10).await;
        let pusher = {
            let (s, r, d) = (s.clone(), r.clone(), d.clone());
            tokio::spawn(async move {
                for i in 0..10 {
                    s.link_manifest(&r, &d).await.unwrap();
                    s.tag_put(&r, &tag(&format!("t{i}")), &d).await.unwrap();
                    let _ = s.tags_list(&r, None, 100).await;
                }
            })
        };
        for _ in 0..5 {
            s.delete_repository(&r).await.unwrap();
            tokio::task::yield_now().await;
        }
        pusher.await.unwrap();
        if round % 2 == 0 {
            s.delete_repository(&r).await.unwrap();
        }
        let disk = FsStorage::open(t.path()).unwrap();
        assert_eq!(
            s.repositories(None, 10).await.unwrap(),
            disk.repositories(None, 10).await.unwrap(),
            "round {round}"
        );
        match (
            s.tags_list(&r, None, 100).await,
            disk.tags_list(&r, None, 100).await,
        ) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "round {round}"),
            (Err(StorageError::NotFound), Err(StorageError::NotFound)) => {}
            (a, b) => panic!("round {round}: {a:?} vs {b:?}"),
        }
    }
}

/// The crash-safety order: `_manifests` (tags and revisions, what makes a repository) leaves
/// first, `_layers` last, and a nested repository is never among what leaves.
#[test]
fn delete_moves_manifests_first_and_layers_last() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("app");
    for d in ["_layers", "_referrers", "_manifests", "_future", "nested"] {
        std::fs::create_dir_all(repo_dir.join(d)).unwrap();
    }
    let own: Vec<String> = super::delete::own_entries(&repo_dir)
        .unwrap()
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .collect();
    assert_eq!(own.len(), 4, "{own:?}");
    assert_eq!(own[0], "_manifests");
    assert_eq!(own[3], "_layers");
    let mut middle = own[1..3].to_vec();
    middle.sort();
    assert_eq!(middle, ["_future", "_referrers"]);
    assert!(super::delete::own_entries(&dir.path().join("missing"))
        .unwrap()
        .is_empty());
}
