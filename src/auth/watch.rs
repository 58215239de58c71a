//! Noticing changes to the users and htpasswd files so the server can reload them. The
//! *parent directories* are watched, not the files: editors and our own atomic writes
//! replace a file by renaming a new one over it, and a watch on the old inode would see
//! nothing after the first edit. Events are filtered by file name and debounced (an
//! editor's save is several events), then `on_change` runs once on a dedicated thread.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// Quiet time after the last relevant event before `on_change` runs.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching (the debounce thread then ends on
/// its own).
pub struct WatchGuard {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard").finish_non_exhaustive()
    }
}

/// Calls `on_change` (debounced) whenever one of `paths` is created, written, replaced,
/// renamed or removed. The directories must exist; the files need not (yet).
pub fn watch_files(
    paths: Vec<PathBuf>,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<WatchGuard, notify::Error> {
    let mut names: HashSet<OsString> = HashSet::new();
    for path in &paths {
        let Some(name) = path.file_name() else {
            return Err(notify::Error::generic(&format!(
                "{} is not a file path",
                path.display()
            )));
        };
        names.insert(name.to_owned());
    }
    let dirs = watched_dirs(&paths);

    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) => {
                if is_relevant(&event, &names) {
                    // The receiver only goes away when the watcher is being dropped.
                    let _ = tx.send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }

    std::thread::Builder::new()
        .name("auth-file-watch".to_owned())
        .spawn(move || debounce(&rx, on_change))
        .map_err(notify::Error::io)?;

    Ok(WatchGuard { _watcher: watcher })
}

/// Waits for a first event, then for `DEBOUNCE` of quiet, then calls `on_change`; ends
/// when the watcher (the only sender) is dropped.
fn debounce(rx: &mpsc::Receiver<()>, on_change: impl Fn()) {
    while rx.recv().is_ok() {
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        on_change();
    }
}

/// Changes to one of our file names. Reads are ignored (our own reload opens the files,
/// which would otherwise trigger another reload), but a close after writing counts.
fn is_relevant(event: &Event, names: &HashSet<OsString>) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    };
    kind_matters
        && event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
}

/// The directories [`watch_files`] would watch for `paths` (for diagnostics).
pub fn watched_dirs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in paths {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn wait_for(count: &AtomicUsize, at_least: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if count.load(Ordering::SeqCst) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn fires_on_write_and_rename_over_but_not_on_other_files_or_reads() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("users.toml");
        std::fs::write(&watched, "a").unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let guard = watch_files(vec![watched.clone()], move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();

        // Plain write.
        std::fs::write(&watched, "b").unwrap();
        assert!(wait_for(&count, 1), "write not seen");
        std::thread::sleep(DEBOUNCE * 2);
        let after_write = count.load(Ordering::SeqCst);
        assert_eq!(after_write, 1, "one save, one callback (debounced)");

        // Atomic replace: write a temporary file, rename it over the watched one (the
        // original inode is gone afterwards; the directory watch still sees the name).
        for round in 0..2 {
            let tmp = dir.path().join(".users.toml.tmp");
            std::fs::write(&tmp, format!("c{round}")).unwrap();
            std::fs::rename(&tmp, &watched).unwrap();
            assert!(
                wait_for(&count, after_write + round + 1),
                "rename {round} not seen"
            );
            std::thread::sleep(DEBOUNCE * 2);
        }
        let after_renames = count.load(Ordering::SeqCst);
        assert_eq!(after_renames, 3);

        // Other files in the directory and reads of ours do nothing.
        std::fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let _ = std::fs::read_to_string(&watched).unwrap();
        std::thread::sleep(DEBOUNCE * 3);
        assert_eq!(count.load(Ordering::SeqCst), after_renames);

        // Deleting is a change too.
        std::fs::remove_file(&watched).unwrap();
        assert!(wait_for(&count, after_renames + 1), "removal not seen");

        drop(guard);
        std::thread::sleep(DEBOUNCE);
        let final_count = count.load(Ordering::SeqCst);
        std::fs::write(&watched, "after drop").unwrap();
        std::thread::sleep(DEBOUNCE * 3);
        assert_eq!(
            count.load(Ordering::SeqCst),
            final_count,
            "no events after drop"
        );
    }

    #[test]
    fn burst_is_debounced() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("htpasswd");
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let _guard = watch_files(vec![watched.clone()], move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        for i in 0..10 {
            std::fs::write(&watched, format!("{i}")).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(wait_for(&count, 1));
        std::thread::sleep(DEBOUNCE * 3);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dirs_are_deduplicated() {
        let dirs = watched_dirs(&[
            PathBuf::from("/etc/holdfast/users.toml"),
            PathBuf::from("/etc/holdfast/htpasswd"),
            PathBuf::from("users.toml"),
        ]);
        assert_eq!(
            dirs,
            vec![PathBuf::from("/etc/holdfast"), PathBuf::from(".")]
        );
    }
}
