//! Web UI sessions and CSRF protection. A session is a random 256-bit id in a cookie
//! (`__Host-` prefixed, `HttpOnly; Secure; SameSite=Strict; Path=/`); the server keeps
//! only the SHA-256 of the id, so a dump of the table holds nothing a browser could
//! present. A session remembers the user's name and its CSRF token, never their identity:
//! every request looks the user up again in today's users file, so a removed user is
//! signed out at once (and a password change ends their sessions, see `revoke_user`).
//!
//! Sessions live in memory: a restart signs everyone out, which for an appliance with a
//! handful of people is a fair price for keeping no session secrets on disk. They end
//! after [`IDLE`] without a request and at the latest [`ABSOLUTE`] after sign-in; the
//! table holds at most [`MAX_SESSIONS`] (the least recently used goes first) and each user
//! at most [`MAX_PER_USER`].
//!
//! CSRF: every form carries the session's token in a hidden field and every POST must
//! present it (compared in constant time). The sign-in form has no session yet: it uses a
//! double-submit token, a random value in a short-lived `__Host-` cookie that the form
//! repeats; a cross-site page can neither read nor set that cookie.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie. `__Host-`: browsers accept it only with `Secure`, `Path=/` and no
/// `Domain`, so no other host (or plain-HTTP page) can plant or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-holdfast-session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "__Host-holdfast-signin";
/// How long the sign-in form's cookie lives (seconds).
pub const SIGNIN_COOKIE_SECS: u64 = 3600;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one user (a new sign-in ends their least recently used one).
pub const MAX_PER_USER: usize = 20;

/// Why a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no randomness for a session id: {0}")]
    Random(String),
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `presented` is `expected`, in time independent of where they differ (both are
/// hashed first, so the length does not show either).
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    a.ct_eq(&b).into()
}

/// The table key of a session id.
fn key_of(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

struct Entry {
    user: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// A request's session as handlers see it.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    key: [u8; 32],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the key.
        f.debug_struct("Session")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The server side of every session.
pub struct Sessions {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
    absolute: Duration,
    max: usize,
    max_per_user: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new()
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("count", &self.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::with_limits(IDLE, ABSOLUTE, MAX_SESSIONS, MAX_PER_USER)
    }

    pub fn with_limits(
        idle: Duration,
        absolute: Duration,
        max: usize,
        max_per_user: usize,
    ) -> Self {
        Sessions {
            entries: Mutex::new(HashMap::new()),
            idle,
            absolute,
            max: max.max(1),
            max_per_user: max_per_user.max(1),
        }
    }

    /// Every critical section leaves the table consistent: a panic elsewhere while holding
    /// the lock is no reason to sign everyone out.
    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) >= self.idle
            || now.saturating_duration_since(e.created) >= self.absolute
    }

    /// Starts a session for `user`; returns the id for the cookie and the session.
    pub fn create(&self, user: &str) -> Result<(String, Session), SessionError> {
        self.create_at(user, Instant::now())
    }

    fn create_at(&self, user: &str, now: Instant) -> Result<(String, Session), SessionError> {
        let id = random_token()?;
        let csrf = random_token()?;
        let key = key_of(&id);
        let mut entries = self.lock();
        entries.retain(|_, e| !self.expired(e, now));
        // The user's own oldest sessions go first, then (the table full) anyone's least
        // recently used one.
        let mut own: Vec<([u8; 32], Instant)> = entries
            .iter()
            .filter(|(_, e)| e.user == user)
            .map(|(k, e)| (*k, e.last_seen))
            .collect();
        if own.len() >= self.max_per_user {
            own.sort_by_key(|(_, seen)| *seen);
            for (k, _) in own.iter().take(own.len() + 1 - self.max_per_user) {
                entries.remove(k);
            }
        }
        while entries.len() >= self.max {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    entries.remove(&k);
                }
                None => break,
            }
        }
        entries.insert(
            key,
            Entry {
                user: user.to_owned(),
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Ok((
            id,
            Session {
                user: user.to_owned(),
                csrf,
                key,
            },
        ))
    }

    /// The live session whose id is `id`, noting this request as its latest use; an
    /// expired one is forgotten.
    pub fn lookup(&self, id: &str) -> Option<Session> {
        self.lookup_at(id, Instant::now())
    }

    fn lookup_at(&self, id: &str, now: Instant) -> Option<Session> {
        // Ids we issue are 43 characters; anything else is not worth hashing.
        if id.len() != 43 {
            return None;
        }
        let key = key_of(id);
        let mut entries = self.lock();
        let expired = match entries.get(&key) {
            None => return None,
            Some(e) => self.expired(e, now),
        };
        if expired {
            entries.remove(&key);
            return None;
        }
        let e = entries.get_mut(&key)?;
        e.last_seen = now;
        Some(Session {
            user: e.user.clone(),
            csrf: e.csrf.clone(),
            key,
        })
    }

    /// Ends `session` (sign-out, or its user is gone).
    pub fn remove(&self, session: &Session) {
        self.lock().remove(&session.key);
    }

    /// Ends every session of `user` (their password changed or they were removed); how
    /// many.
    pub fn revoke_user(&self, user: &str) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.user != user);
        before - entries.len()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value for a session-lifetime (or `max_age` seconds) cookie with every
/// protection on.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        c.push_str(&format!("; Max-Age={secs}"));
    }
    c
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compare_exactly() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a, &b));
        assert!(!tokens_match(&a, ""));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::with_limits(Duration::from_secs(10), Duration::from_secs(30), 100, 5);
        let t0 = Instant::now();
        let (id, session) = s.create_at("alice", t0).unwrap();
        assert_eq!(session.user, "alice");
        let found = s.lookup_at(&id, t0 + Duration::from_secs(9)).unwrap();
        assert_eq!(found.csrf, session.csrf);
        // Used every 9 s, it lives until the absolute limit.
        assert!(s.lookup_at(&id, t0 + Duration::from_secs(18)).is_some());
        assert!(s.lookup_at(&id, t0 + Duration::from_secs(27)).is_some());
        assert!(s.lookup_at(&id, t0 + Duration::from_secs(30)).is_none());
        assert!(s.is_empty());
        // Idle too long.
        let (id, _) = s.create_at("alice", t0).unwrap();
        assert!(s.lookup_at(&id, t0 + Duration::from_secs(10)).is_none());
        // Unknown and malformed ids.
        assert!(s.lookup_at(&random_token().unwrap(), t0).is_none());
        assert!(s.lookup_at("short", t0).is_none());
    }

    #[test]
    fn the_table_keeps_hashes_only() {
        let s = Sessions::new();
        let (id, _) = s.create("alice").unwrap();
        let entries = s.lock();
        assert!(entries.contains_key(&key_of(&id)));
        assert!(!entries.keys().any(|k| k.as_slice() == id.as_bytes()));
    }

    #[test]
    fn caps_per_user_and_overall() {
        let s = Sessions::with_limits(Duration::from_secs(100), Duration::from_secs(100), 4, 2);
        let t0 = Instant::now();
        let (a1, _) = s.create_at("alice", t0).unwrap();
        let (a2, _) = s.create_at("alice", t0 + Duration::from_secs(1)).unwrap();
        let (a3, _) = s.create_at("alice", t0 + Duration::from_secs(2)).unwrap();
        // alice's oldest went.
        let now = t0 + Duration::from_secs(3);
        assert!(s.lookup_at(&a1, now).is_none());
        assert!(s.lookup_at(&a2, now).is_some());
        assert!(s.lookup_at(&a3, now).is_some());
        let (b1, _) = s.create_at("bob", t0 + Duration::from_secs(4)).unwrap();
        let (c1, _) = s.create_at("carol", t0 + Duration::from_secs(5)).unwrap();
        // Full (4): the least recently used (a2 and a3 were seen at 3 s) goes.
        let (d1, _) = s.create_at("dave", t0 + Duration::from_secs(6)).unwrap();
        assert_eq!(s.len(), 4);
        let now = t0 + Duration::from_secs(7);
        for id in [&b1, &c1, &d1] {
            assert!(s.lookup_at(id, now).is_some());
        }
        assert_eq!(
            [&a2, &a3]
                .iter()
                .filter(|id| s.lookup_at(id, now).is_some())
                .count(),
            1
        );
    }

    #[test]
    fn sign_out_and_revocation() {
        let s = Sessions::new();
        let (id, session) = s.create("alice").unwrap();
        let (other, _) = s.create("alice").unwrap();
        let (bob, _) = s.create("bob").unwrap();
        s.remove(&session);
        assert!(s.lookup(&id).is_none());
        assert!(s.lookup(&other).is_some());
        assert_eq!(s.revoke_user("alice"), 1);
        assert!(s.lookup(&other).is_none());
        assert!(s.lookup(&bob).is_some());
        assert!(!format!("{session:?}").contains(&session.csrf));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; __Host-holdfast-session=xyz".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "v", None);
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(clear_cookie(SESSION_COOKIE).contains("Max-Age=0"));
    }
}
