//! [`Authenticator`]: the long-lived, shared object the HTTP layer asks "who is this?" and
//! "may they?". It holds the current [`AuthState`] (swapped whole on reload), a cache of
//! successful verifications (docker sends Basic credentials with every request and argon2
//! costs tens of milliseconds), the failed-login throttle, and a small semaphore that
//! bounds how many verifications run on tokio's blocking pool at once, so a flood of bad
//! logins cannot take every CPU.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::basic::parse_basic;
use super::hashes::{self, HashKind, DUMMY_ARGON2ID};
use super::state::AuthState;
use super::throttle::Throttle;
use super::{Action, AuthError, AuthSettings, Identity, AUDIT_TARGET};

/// Longest user name and password considered at all: longer ones are refused before any
/// hashing (argon2 accepts huge inputs, and hashing megabytes is an easy CPU sink).
const MAX_USER_LEN: usize = 256;
const MAX_PASSWORD_LEN: usize = 1024;

/// Cached verifications kept per user: a user has one password, so more than a couple of
/// entries only happens around a password change.
const CACHE_ENTRIES_PER_USER: usize = 2;

struct CacheEntry {
    /// SHA-256(process secret ‖ password): the password itself is never kept, and the
    /// digest is useless outside this process.
    digest: [u8; 32],
    /// The stored hash the password was verified against; a changed hash misses.
    hash: String,
    expires: Instant,
}

struct Cache {
    /// Bumped by every reload; an insert computed under an older state is dropped.
    generation: u64,
    entries: HashMap<String, Vec<CacheEntry>>,
}

struct Current {
    generation: u64,
    state: Arc<AuthState>,
}

pub struct Authenticator {
    current: RwLock<Current>,
    realm: String,
    cache: Mutex<Cache>,
    cache_ttl: Duration,
    secret: [u8; 32],
    /// Shared with the blocking verification tasks, which record failures themselves.
    throttle: Arc<Mutex<Throttle>>,
    pool: Arc<Semaphore>,
    verifications: AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately omits the secret and the cache.
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("cache_ttl", &self.cache_ttl)
            .field("verifications", &self.verifications())
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another thread panicked while holding it; every critical
/// section here leaves the data consistent, so carry on rather than fail every request.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// User names in logs come from clients: quote and escape them (Debug) and cut them short.
fn log_name(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("{short:?}")
}

impl Authenticator {
    /// `settings` provides the realm, cache lifetime, pool size and throttle settings
    /// (fixed for the process); users, rules and `allow_delete` come from `state` and
    /// change with [`Authenticator::reload`].
    pub fn new(state: AuthState, settings: &AuthSettings) -> Self {
        let mut secret = [0u8; 32];
        let mut cache_ttl = Duration::from_secs(settings.cache_seconds);
        if let Err(e) = getrandom::fill(&mut secret) {
            // Without a secret the cache keys would be plain password hashes: run
            // without the cache instead (slower, still correct).
            tracing::error!(error = %e, "no randomness for the verification cache; cache disabled");
            cache_ttl = Duration::ZERO;
        }
        Authenticator {
            current: RwLock::new(Current {
                generation: 0,
                state: Arc::new(state),
            }),
            realm: settings.realm.clone(),
            cache: Mutex::new(Cache {
                generation: 0,
                entries: HashMap::new(),
            }),
            cache_ttl,
            secret,
            throttle: Arc::new(Mutex::new(Throttle::new(&settings.throttle))),
            pool: Arc::new(Semaphore::new(settings.verify_concurrency.max(1))),
            verifications: AtomicU64::new(0),
        }
    }

    /// Swaps in a new snapshot and forgets every cached verification, so a removed user
    /// or changed password takes effect on the next request.
    pub fn reload(&self, state: AuthState) {
        let generation = {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            current.generation += 1;
            current.state = Arc::new(state);
            current.generation
        };
        let mut cache = lock(&self.cache);
        cache.entries.clear();
        cache.generation = generation;
    }

    /// The current snapshot (e.g. for `user_count` or catalog filtering).
    pub fn state(&self) -> Arc<AuthState> {
        self.snapshot().1
    }

    fn snapshot(&self) -> (u64, Arc<AuthState>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.generation, current.state.clone())
    }

    pub fn realm(&self) -> String {
        self.realm.clone()
    }

    /// The `WWW-Authenticate` value for a 401: `Basic realm="…", charset="UTF-8"`
    /// (RFC 7617), with the realm's quotes and backslashes escaped and control characters
    /// dropped (they are not allowed in a header value).
    pub fn challenge(&self) -> String {
        let realm: String = self.realm.chars().filter(|c| !c.is_control()).collect();
        let realm = realm.replace('\\', "\\\\").replace('"', "\\\"");
        format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
    }

    /// How many argon2/bcrypt verifications have run (including the dummy ones for
    /// unknown users); cache hits and throttled attempts do not count. For tests and
    /// metrics.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether `identity` may do `action` on `repository` under the current rules.
    pub fn allowed(&self, identity: &Identity, repository: &str, action: Action) -> bool {
        self.snapshot().1.allowed(identity, repository, action)
    }

    /// Turns the raw `Authorization` header (if any) into an identity. No header is the
    /// anonymous identity; `peer` is the client address, used for throttling and audit.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        let Some(header) = authorization else {
            return Ok(Identity::anonymous());
        };
        let (user, password) = match parse_basic(header) {
            Ok(Some(credentials)) => credentials,
            Ok(None) => return Err(AuthError::MissingCredentials),
            Err(e) => {
                audit_failure(None, peer, "malformed_header");
                return Err(e);
            }
        };
        if user.is_empty() && password.is_empty() {
            // `Basic Og==` (":"): what skopeo and podman send when they have no
            // credentials for this registry. That is an anonymous caller.
            return Ok(Identity::anonymous());
        }
        if user.is_empty() {
            return Err(AuthError::MissingCredentials);
        }
        if user.len() > MAX_USER_LEN || password.len() > MAX_PASSWORD_LEN {
            audit_failure(Some(&user), peer, "too_long");
            return Err(AuthError::BadCredentials);
        }
        self.check_password(&user, &password, peer).await
    }

    async fn check_password(
        &self,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Identity, AuthError> {
        // The throttle comes before the cache: otherwise a guess that happens to match a
        // cached password would be answered while the name is locked, an oracle that
        // costs the attacker nothing.
        let throttled = lock(&self.throttle).check(user, peer, Instant::now());
        if let Some(retry_after_secs) = throttled {
            audit_failure(Some(user), peer, "throttled");
            return Err(AuthError::Throttled { retry_after_secs });
        }

        let digest = self.digest(password);
        let (generation, state) = self.snapshot();
        let record = state.user(user).cloned();
        if let Some(record) = &record {
            if self.cache_hit(user, &digest, &record.hash) {
                return Ok(identity(user, record));
            }
        }

        // Unknown users are checked against a dummy hash of the default cost so that
        // the answer takes as long as for a known user with a wrong password.
        let (kind, hash) = match &record {
            Some(r) => (r.kind, r.hash.clone()),
            None => (HashKind::Argon2id, DUMMY_ARGON2ID.to_owned()),
        };
        let known = record.is_some();
        let matched = match self
            .verify_on_pool(kind, hash, known, user, password, peer)
            .await
        {
            Some(matched) => matched,
            None => {
                let retry_after_secs = lock(&self.throttle)
                    .check(user, peer, Instant::now())
                    .unwrap_or(1);
                audit_failure(Some(user), peer, "throttled");
                return Err(AuthError::Throttled { retry_after_secs });
            }
        };

        let now = Instant::now();
        match (record, matched) {
            (Some(record), Ok(true)) => {
                // If a reload happened while we were hashing, only accept the answer
                // when the user still exists with the very hash we checked.
                let (now_generation, now_state) = self.snapshot();
                let record = if now_generation == generation {
                    record
                } else {
                    match now_state.user(user) {
                        Some(r) if bool::from(r.hash.as_bytes().ct_eq(record.hash.as_bytes())) => {
                            r.clone()
                        }
                        _ => {
                            lock(&self.throttle).record_failure(user, peer, now);
                            audit_failure(Some(user), peer, "changed_during_login");
                            return Err(AuthError::BadCredentials);
                        }
                    }
                };
                lock(&self.throttle).record_success(user, peer, now);
                self.cache_insert(generation, user, digest, &record.hash, now);
                tracing::info!(
                    target: AUDIT_TARGET,
                    event = "login",
                    user = %log_name(user),
                    peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                    "password verified"
                );
                Ok(identity(user, &record))
            }
            (record, outcome) => {
                // The failure was already counted by the verification task.
                let reason = match (&record, &outcome) {
                    (_, Err(_)) => "verification_error",
                    (None, _) => "unknown_user",
                    (Some(_), _) => "bad_password",
                };
                if let Err(e) = &outcome {
                    tracing::error!(
                        user = %log_name(user),
                        error = %e,
                        "stored password hash cannot be verified"
                    );
                }
                audit_failure(Some(user), peer, reason);
                Err(AuthError::BadCredentials)
            }
        }
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn cache_hit(&self, user: &str, digest: &[u8; 32], hash: &str) -> bool {
        if self.cache_ttl.is_zero() {
            return false;
        }
        let now = Instant::now();
        let cache = lock(&self.cache);
        cache.entries.get(user).is_some_and(|entries| {
            // Compare every entry in constant time; no early exit on the digest.
            let mut hit = subtle::Choice::from(0u8);
            for e in entries {
                let fresh = subtle::Choice::from(u8::from(e.expires > now));
                hit |= e.digest.ct_eq(digest) & e.hash.as_bytes().ct_eq(hash.as_bytes()) & fresh;
            }
            bool::from(hit)
        })
    }

    fn cache_insert(
        &self,
        generation: u64,
        user: &str,
        digest: [u8; 32],
        hash: &str,
        now: Instant,
    ) {
        if self.cache_ttl.is_zero() {
            return;
        }
        let mut cache = lock(&self.cache);
        if cache.generation != generation {
            return;
        }
        let entries = cache.entries.entry(user.to_owned()).or_default();
        entries.retain(|e| e.expires > now && e.hash == hash && e.digest != digest);
        if entries.len() >= CACHE_ENTRIES_PER_USER {
            entries.remove(0);
        }
        entries.push(CacheEntry {
            digest,
            hash: hash.to_owned(),
            expires: now + self.cache_ttl,
        });
    }

    /// Runs one verification on the blocking pool, at most `verify_concurrency` at once;
    /// `None` if the throttle closed while this request waited for its turn.
    ///
    /// Guessing in parallel must not slip past the throttle: the throttle is checked
    /// again once a permit is held, and a failure is recorded by the blocking task before
    /// it gives the permit back, so the next waiter already sees it. The permit and the
    /// recording live in the blocking task, so a client that disconnects mid-hash still
    /// holds its slot until the hashing ends and still has its failure counted.
    async fn verify_on_pool(
        &self,
        kind: HashKind,
        hash: String,
        known: bool,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Option<Result<bool, String>> {
        let permit = match self.pool.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(e) => return Some(Err(e.to_string())),
        };
        if lock(&self.throttle)
            .check(user, peer, Instant::now())
            .is_some()
        {
            return None;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let password = password.as_bytes().to_vec();
        let user = user.to_owned();
        let throttle = self.throttle.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = hashes::verify(kind, &hash, &password);
            // An unknown user always fails, whatever the dummy hash says.
            if !(known && matches!(result, Ok(true))) {
                lock(&throttle).record_failure(&user, peer, Instant::now());
            }
            drop(permit);
            result
        });
        Some(
            task.await
                .map_err(|e| format!("verification task failed: {e}"))
                .and_then(|r| r),
        )
    }

    #[cfg(test)]
    fn throttle_tracked(&self) -> (usize, usize, usize) {
        lock(&self.throttle).tracked()
    }
}

fn identity(user: &str, record: &super::state::UserRecord) -> Identity {
    Identity {
        user: Some(user.to_owned()),
        groups: record.groups.clone(),
        admin: record.admin,
    }
}

/// One structured line per failed login, on the `audit` target. Never the password or
/// the header.
fn audit_failure(user: Option<&str>, peer: Option<IpAddr>, reason: &'static str) {
    tracing::warn!(
        target: AUDIT_TARGET,
        event = "login_failed",
        user = %user.map(log_name).unwrap_or_default(),
        peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
        reason,
        "login failed"
    );
}

#[cfg(test)]
mod tests {
    use super::super::hashes::tests::cheap_argon2id;
    use super::super::{AccessRule, ThrottleSettings, UserEntry};
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn entry(name: &str, password: &str, groups: &[&str], admin: bool) -> UserEntry {
        UserEntry {
            name: name.into(),
            password_hash: cheap_argon2id(password),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
        }
    }

    fn settings(users: Vec<UserEntry>) -> AuthSettings {
        AuthSettings {
            users,
            throttle: ThrottleSettings {
                max_failures: 3,
                initial_backoff_ms: 300,
                max_backoff_seconds: 2,
                ..ThrottleSettings::default()
            },
            ..AuthSettings::default()
        }
    }

    fn build(users: Vec<UserEntry>, rules: &[AccessRule]) -> (Authenticator, AuthSettings) {
        let s = settings(users);
        let state = AuthState::load(&s, rules).unwrap();
        (Authenticator::new(state, &s), s)
    }

    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test]
    async fn no_header_is_anonymous_and_other_schemes_are_missing() {
        let (auth, _) = build(vec![], &[]);
        assert_eq!(
            auth.authenticate(None, PEER).await,
            Ok(Identity::anonymous())
        );
        assert_eq!(
            auth.authenticate(Some("Bearer xyz"), PEER).await,
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("", "x")), PEER).await,
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            auth.authenticate(Some("Basic %%%"), PEER).await,
            Err(AuthError::Malformed)
        );
        let long = "x".repeat(2000);
        assert_eq!(
            auth.authenticate(Some(&basic("bob", &long)), PEER).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(auth.verifications(), 0);
        assert_eq!(auth.realm(), "holdfast");
        assert_eq!(
            auth.challenge(),
            r#"Basic realm="holdfast", charset="UTF-8""#
        );
        let mut s = settings(vec![]);
        s.realm = "my \"odd\" \\ realm\n".to_owned();
        let odd = Authenticator::new(AuthState::default(), &s);
        assert_eq!(
            odd.challenge(),
            r#"Basic realm="my \"odd\" \\ realm", charset="UTF-8""#
        );
    }

    #[tokio::test]
    async fn argon2_and_bcrypt_users() {
        let dir = tempfile::tempdir().unwrap();
        let ht = dir.path().join("htpasswd");
        let b = bcrypt::hash("old-pass", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&ht, format!("legacy:{b}\n")).unwrap();
        let mut s = settings(vec![entry("alice", "wonder", &["team-a"], false)]);
        s.htpasswd_files = vec![ht];
        let auth = Authenticator::new(AuthState::load(&s, &[]).unwrap(), &s);

        let id = auth
            .authenticate(Some(&basic("alice", "wonder")), PEER)
            .await
            .unwrap();
        assert_eq!(
            id,
            Identity {
                user: Some("alice".into()),
                groups: vec!["team-a".into()],
                admin: false
            }
        );
        let id = auth
            .authenticate(Some(&basic("legacy", "old-pass")), PEER)
            .await
            .unwrap();
        assert_eq!(id.user.as_deref(), Some("legacy"));
        assert_eq!(
            auth.authenticate(Some(&basic("legacy", "wrong")), PEER)
                .await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "wrong")), PEER)
                .await,
            Err(AuthError::BadCredentials)
        );
    }

    #[tokio::test]
    async fn audit_lines_without_secrets() {
        let (auth, _) = build(vec![entry("alice", "pw", &[], false)], &[]);
        let (_guard, logs) = super::super::test_log::capture();
        let bad = basic("alice", "hunter2-guess");
        let _ = auth.authenticate(Some(&bad), PEER).await;
        let _ = auth
            .authenticate(Some(&basic("nobody\nforged", "x")), PEER)
            .await;
        let _ = auth.authenticate(Some("Basic %%%"), PEER).await;
        auth.authenticate(Some(&basic("alice", "pw")), PEER)
            .await
            .unwrap();
        let logs = logs.text();
        let failures: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("login failed"))
            .collect();
        assert_eq!(failures.len(), 3, "{logs}");
        assert!(failures.iter().all(|l| l.contains(" audit: ")), "{logs}");
        assert!(
            failures[0].contains("user=\"alice\"")
                && failures[0].contains("reason=\"bad_password\""),
            "{logs}"
        );
        assert!(failures[0].contains("peer=127.0.0.1"), "{logs}");
        // A client-chosen name cannot forge a log line.
        assert!(failures[1].contains(r#"user="nobody\nforged""#), "{logs}");
        assert!(failures[1].contains("unknown_user"), "{logs}");
        assert!(failures[2].contains("malformed_header"), "{logs}");
        assert!(logs.contains("password verified"), "{logs}");
        for secret in ["hunter2-guess", "pw\n", &bad, &bad[6..], "$argon2id$"] {
            assert!(!logs.contains(secret), "{secret:?} logged: {logs}");
        }
    }

    #[tokio::test]
    async fn unknown_user_costs_a_verification() {
        let (auth, _) = build(vec![entry("alice", "pw", &[], false)], &[]);
        assert_eq!(
            auth.authenticate(Some(&basic("mallory", "pw")), PEER).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(auth.verifications(), 1, "dummy hash was verified");
    }

    #[tokio::test]
    async fn cache_skips_second_verification_but_not_failures() {
        let (auth, _) = build(vec![entry("alice", "pw", &[], false)], &[]);
        let h = basic("alice", "pw");
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 1);
        for _ in 0..5 {
            auth.authenticate(Some(&h), PEER).await.unwrap();
        }
        assert_eq!(auth.verifications(), 1, "cached");
        // A different (wrong) password is not served from the cache...
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "pw2")), PEER).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(auth.verifications(), 2);
        // ...and failures are not cached: each one verifies again.
        let _ = auth.authenticate(Some(&basic("alice", "pw2")), PEER).await;
        assert_eq!(auth.verifications(), 3);
    }

    #[tokio::test]
    async fn cache_expires() {
        let mut s = settings(vec![entry("alice", "pw", &[], false)]);
        s.cache_seconds = 1;
        let auth = Authenticator::new(AuthState::load(&s, &[]).unwrap(), &s);
        let h = basic("alice", "pw");
        auth.authenticate(Some(&h), PEER).await.unwrap();
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 2);
    }

    #[tokio::test]
    async fn cache_disabled_with_zero_seconds() {
        let mut s = settings(vec![entry("alice", "pw", &[], false)]);
        s.cache_seconds = 0;
        let auth = Authenticator::new(AuthState::load(&s, &[]).unwrap(), &s);
        let h = basic("alice", "pw");
        auth.authenticate(Some(&h), PEER).await.unwrap();
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 2);
    }

    #[tokio::test]
    async fn reload_clears_cache_and_removed_user_loses_access() {
        let mut rule = AccessRule::new("*");
        rule.all_authenticated = vec![Action::Pull];
        let rules = vec![rule];
        let (auth, s) = build(
            vec![
                entry("alice", "pw", &[], false),
                entry("bob", "pw", &[], false),
            ],
            &rules,
        );
        let h = basic("alice", "pw");
        let id = auth.authenticate(Some(&h), PEER).await.unwrap();
        assert!(auth.allowed(&id, "x", Action::Pull));
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 1);

        // Same users again: the cache is still cleared.
        auth.reload(AuthState::load(&s, &rules).unwrap());
        auth.authenticate(Some(&h), PEER).await.unwrap();
        assert_eq!(auth.verifications(), 2);

        // alice removed: refused at once, even though her password was cached.
        let mut without_alice = s.clone();
        without_alice.users.retain(|u| u.name != "alice");
        auth.reload(AuthState::load(&without_alice, &rules).unwrap());
        assert_eq!(
            auth.authenticate(Some(&h), PEER).await,
            Err(AuthError::BadCredentials)
        );
        assert!(auth.state().has_user("bob"));
    }

    #[tokio::test]
    async fn changed_hash_misses_the_cache() {
        let (auth, s) = build(vec![entry("alice", "old", &[], false)], &[]);
        auth.authenticate(Some(&basic("alice", "old")), PEER)
            .await
            .unwrap();
        // Reload with a new password for alice; the old one must stop working.
        let mut changed = s.clone();
        changed.users = vec![entry("alice", "new", &[], false)];
        auth.reload(AuthState::load(&changed, &[]).unwrap());
        assert_eq!(
            auth.authenticate(Some(&basic("alice", "old")), PEER).await,
            Err(AuthError::BadCredentials)
        );
        auth.authenticate(Some(&basic("alice", "new")), PEER)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn cache_entry_checks_the_hash_too() {
        // Even without the reload clearing it, an entry for another hash never hits.
        let (auth, _) = build(vec![entry("alice", "pw", &[], false)], &[]);
        let digest = auth.digest("pw");
        auth.cache_insert(
            0,
            "alice",
            digest,
            "$argon2id$some-other-hash",
            Instant::now(),
        );
        auth.authenticate(Some(&basic("alice", "pw")), PEER)
            .await
            .unwrap();
        assert_eq!(auth.verifications(), 1);
    }

    #[tokio::test]
    async fn throttling_then_recovery() {
        let (auth, _) = build(vec![entry("alice", "right", &[], false)], &[]);
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate(Some(&basic("alice", "wrong")), PEER)
                    .await,
                Err(AuthError::BadCredentials)
            );
        }
        assert_eq!(auth.verifications(), 3);
        // Locked: even the right password is refused, and argon2 does not run.
        let right = basic("alice", "right");
        assert_eq!(
            auth.authenticate(Some(&right), PEER).await,
            Err(AuthError::Throttled {
                retry_after_secs: 1
            })
        );
        assert_eq!(auth.verifications(), 3);
        // From another address the name is still locked.
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
        assert!(matches!(
            auth.authenticate(Some(&right), other).await,
            Err(AuthError::Throttled { .. })
        ));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let id = auth.authenticate(Some(&right), PEER).await.unwrap();
        assert_eq!(id.user.as_deref(), Some("alice"));
        // The success reset alice's count: one more failure does not lock her...
        let _ = auth
            .authenticate(Some(&basic("alice", "wrong")), other)
            .await;
        assert!(auth.authenticate(Some(&right), other).await.is_ok());
    }

    #[tokio::test]
    async fn throttle_grows_and_unknown_users_are_throttled_too() {
        let (auth, _) = build(vec![], &[]);
        for _ in 0..3 {
            let _ = auth.authenticate(Some(&basic("ghost", "x")), None).await;
        }
        let r = auth.authenticate(Some(&basic("ghost", "x")), None).await;
        assert_eq!(
            r,
            Err(AuthError::Throttled {
                retry_after_secs: 1
            })
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        let _ = auth.authenticate(Some(&basic("ghost", "x")), None).await;
        // Second lock: 600 ms.
        match auth.authenticate(Some(&basic("ghost", "x")), None).await {
            Err(AuthError::Throttled { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(auth.verifications(), 4);
        assert_eq!(auth.throttle_tracked().0, 1);
    }

    #[tokio::test]
    async fn admin_identity_and_rules() {
        let mut rule = AccessRule::new("team-a/*");
        rule.groups.insert("team-a".into(), vec![Action::Push]);
        let (auth, _) = build(
            vec![
                entry("root", "pw", &[], true),
                entry("alice", "pw", &["team-a"], false),
            ],
            &[rule],
        );
        let root = auth
            .authenticate(Some(&basic("root", "pw")), PEER)
            .await
            .unwrap();
        assert!(root.admin);
        assert!(auth.allowed(&root, "any/where", Action::Delete));
        let alice = auth
            .authenticate(Some(&basic("alice", "pw")), PEER)
            .await
            .unwrap();
        assert!(auth.allowed(&alice, "team-a/x", Action::Pull));
        assert!(!auth.allowed(&alice, "team-a/x", Action::Delete));
        assert!(!auth.allowed(&Identity::anonymous(), "team-a/x", Action::Pull));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_do_not_slip_past_the_throttle() {
        let (auth, _) = build(vec![entry("alice", "right", &[], false)], &[]);
        let auth = Arc::new(auth);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                auth.authenticate(Some(&basic("alice", &format!("guess{i}"))), PEER)
                    .await
            }));
        }
        let mut throttled = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(AuthError::Throttled { .. }) => throttled += 1,
                Err(AuthError::BadCredentials) => {}
                other => panic!("{other:?}"),
            }
        }
        // max_failures = 3 and two verifications may be in flight when the third fails.
        assert!(
            auth.verifications() <= 4,
            "{} guesses ran",
            auth.verifications()
        );
        assert_eq!(throttled + auth.verifications(), 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_is_bounded() {
        let mut s = settings(vec![entry("alice", "pw", &[], false)]);
        s.verify_concurrency = 1;
        s.cache_seconds = 0;
        let auth = Arc::new(Authenticator::new(AuthState::load(&s, &[]).unwrap(), &s));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                auth.authenticate(Some(&basic("alice", "pw")), None).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(auth.verifications(), 8);
        assert_eq!(auth.pool.available_permits(), 1);
    }
}
