//! Pending whole-repository deletions for registries in other processes: the index API
//! deletes a repository's records at once, and each other registry the index serves is
//! told to remove the content when it next reports in; the entry stays until that
//! registry confirms, so a registry that is down gets the deletion when it returns.

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Records that each of `services` must delete `repository` (again, if already asked).
    pub fn queue_deletion(
        &self,
        repository: &str,
        services: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO pending_deletions (repository, service, requested_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (repository, service) DO UPDATE SET requested_at = excluded.requested_at",
            )?;
            for service in services {
                insert.execute(params![repository, service, now])?;
            }
            Ok(((), true))
        })
    }

    /// The repositories `service` still has to delete, oldest request first.
    pub fn pending_deletions(&self, service: &str) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT repository FROM pending_deletions WHERE service = ?1
                 ORDER BY requested_at, repository LIMIT 1000",
            )?;
            let rows = statement.query_map([service], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// `service` confirmed it deleted `repository`; false if nothing was pending.
    pub fn pending_deletion_done(
        &self,
        repository: &str,
        service: &str,
    ) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM pending_deletions WHERE repository = ?1 AND service = ?2",
                )?
                .execute([repository, service])?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_confirmed_per_service() {
        let store = Store::open_in_memory().unwrap();
        let services = vec!["a".to_owned(), "b".to_owned()];
        store.queue_deletion("x/one", &services, 10).unwrap();
        store.queue_deletion("x/two", &services[..1], 11).unwrap();
        // Asking again is not an error and keeps one entry.
        store.queue_deletion("x/one", &services[..1], 12).unwrap();
        assert_eq!(store.pending_deletions("a").unwrap(), ["x/two", "x/one"]);
        assert_eq!(store.pending_deletions("b").unwrap(), ["x/one"]);
        assert!(store.pending_deletion_done("x/one", "b").unwrap());
        assert!(!store.pending_deletion_done("x/one", "b").unwrap());
        assert!(store.pending_deletions("b").unwrap().is_empty());
        assert_eq!(store.pending_deletions("a").unwrap().len(), 2);
    }
}
