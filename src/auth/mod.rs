//! Authentication and authorization for the standalone appliance: who is asking (Basic
//! credentials checked against the users file, inline users and migrated htpasswd files,
//! giving an [`Identity`]) and whether that identity may pull, push or delete in a
//! repository (the `[[access]]` rules, default deny). The HTTP layer calls
//! [`Authenticator::authenticate`] then [`Authenticator::allowed`]; handlers never see
//! credentials, and nothing here touches storage.
//!
//! Pieces: `basic` parses the header, `hashes` verifies argon2id and bcrypt, `throttle`
//! slows down password guessing, `state` loads an immutable snapshot of users and rules,
//! `access` matches repository globs and evaluates grants, `authenticator` ties them
//! together with a verification cache, `users_file` edits the users file for the CLI, and
//! `watch` notices when the files change so the server can reload.

mod access;
mod authenticator;
mod basic;
pub mod bearer;
mod hashes;
mod htpasswd;
pub mod scope;
mod state;
mod throttle;
pub mod users_file;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use access::{Glob, GlobError};
pub use authenticator::Authenticator;
pub use basic::parse_basic;
pub use state::{AuthLoadError, AuthState};
pub use users_file::{
    add_user, ensure_initial_admin, hash_password, list_users, read_password, remove_user,
    set_password, UsersFileError, INITIAL_ADMIN_PASSWORD_FILE,
};
pub use watch::{watch_files, WatchGuard};

/// The `tracing` target of security-relevant events (failed logins, throttling), so an
/// operator can route them to their own sink.
pub const AUDIT_TARGET: &str = "audit";

/// What a request wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            other => Err(format!(
                "unknown action `{other}` (expected pull, push or delete)"
            )),
        }
    }
}

/// Who a request acts as. `user == None` is the anonymous caller (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
}

impl Identity {
    pub fn anonymous() -> Self {
        Identity::default()
    }

    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// The user's name, or `"anonymous"`: for access logs.
    pub fn display_name(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }
}

/// Why a request could not be authenticated. The messages are safe to show to clients:
/// none says whether a user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials we understand (e.g. a non-Basic scheme or an empty user name):
    /// answer 401 with a Basic challenge.
    #[error("authentication required")]
    MissingCredentials,
    /// Unknown user or wrong password (deliberately indistinguishable).
    #[error("invalid user name or password")]
    BadCredentials,
    /// Too many recent failures for this user name or client address: answer 429 with
    /// `Retry-After`. No password was checked.
    #[error("too many failed logins; retry after {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// A Basic header that is not base64 of UTF-8 `user:password`.
    #[error("malformed Authorization header")]
    Malformed,
}

/// `[auth]` in the main config. Fields marked "reloadable" take effect on
/// [`Authenticator::reload`] (they are part of [`AuthState`]); the others are read once by
/// [`Authenticator::new`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `basic` (default): Basic credentials against the configured users, `[[access]]` rules.
    /// `none`: no authentication at all, everyone may do everything (only for a registry
    /// reachable solely by trusted machines, or behind a proxy that authenticates).
    pub mode: AuthMode,
    /// The realm in `WWW-Authenticate: Basic realm="…"`.
    pub realm: String,
    /// The users file (TOML, `[[users]]` tables), edited by `holdfast user …`. A missing
    /// file counts as no users (first run). Reloadable.
    pub users_file: Option<PathBuf>,
    /// htpasswd files from CNCF distribution (bcrypt lines only). Reloadable.
    pub htpasswd_files: Vec<PathBuf>,
    /// `false` forbids every delete, even for admins. Reloadable.
    pub allow_delete: bool,
    /// How long a successful password verification is remembered; 0 disables the cache.
    pub cache_seconds: u64,
    /// How many password verifications (argon2/bcrypt) may run at once.
    pub verify_concurrency: usize,
    /// Users written inline in the main config (`[[auth.users]]`). Reloadable.
    pub users: Vec<UserEntry>,
    /// `[auth.throttle]`: slowing down password guessing.
    pub throttle: ThrottleSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Basic,
            realm: "holdfast".to_owned(),
            users_file: None,
            htpasswd_files: Vec::new(),
            allow_delete: true,
            cache_seconds: 60,
            verify_concurrency: 2,
            users: Vec::new(),
            throttle: ThrottleSettings::default(),
        }
    }
}

impl AuthSettings {
    /// The users file to read and edit: `users_file` if set, else `<data_dir>/users.toml`.
    /// The config loader should store this back into `users_file` so that the server and
    /// the `user` commands agree on one file.
    pub fn users_file_or_default(&self, data_dir: &Path) -> PathBuf {
        self.users_file
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_USERS_FILE))
    }

    /// The files whose change should trigger a reload (for [`watch_files`]).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.users_file
            .iter()
            .chain(self.htpasswd_files.iter())
            .cloned()
            .collect()
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Basic,
    /// Bearer tokens signed by an index (`[token]`, and `[index] enabled` for the embedded
    /// one): the registry verifies them offline.
    Token,
}

/// Name of the users file inside the data folder when none is configured.
pub const DEFAULT_USERS_FILE: &str = "users.toml";

/// `[auth.throttle]`: after `max_failures` failed logins for one user name or one client
/// address (IPv6 grouped by /64), further attempts are refused without checking the
/// password for `initial_backoff_ms`, doubling with each further failure up to
/// `max_backoff_seconds`. The count is forgotten after `window_seconds` without failures,
/// and a successful login clears the user name's count.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSettings {
    pub max_failures: u32,
    pub window_seconds: u64,
    pub initial_backoff_ms: u64,
    pub max_backoff_seconds: u64,
    /// Upper bound on tracked user names and addresses each (memory bound under attack).
    pub max_tracked: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            max_failures: 5,
            window_seconds: 300,
            initial_backoff_ms: 1000,
            max_backoff_seconds: 60,
            max_tracked: 10_000,
        }
    }
}

/// One user in the users file (`[[users]]`) or inline in the main config
/// (`[[auth.users]]`). Its `Debug` output leaves the hash out, so logging the settings
/// never leaks offline-guessable material.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("groups", &self.groups)
            .field("admin", &self.admin)
            .finish()
    }
}

/// One `[[access]]` table: who may do what in the repositories matching `repository`.
///
/// `repository` is a glob: `*` matches any characters except `/`, `**` matches any
/// characters including `/`, and the pattern `*` on its own matches every repository.
/// Grants are lists of `"pull"`, `"push"`, `"delete"`. `anonymous` grants apply to every
/// caller (signed in or not: signing in never loses access), `all_authenticated` to every
/// signed-in user, `users`/`groups` to the named ones. A `push` grant also grants `pull`
/// unless `push_implies_pull = false`; `delete` implies nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub repository: String,
    #[serde(default)]
    pub anonymous: Vec<Action>,
    #[serde(default)]
    pub all_authenticated: Vec<Action>,
    #[serde(default)]
    pub users: BTreeMap<String, Vec<Action>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<Action>>,
    #[serde(default = "default_true")]
    pub push_implies_pull: bool,
}

impl AccessRule {
    /// A rule for `repository` that grants nothing yet (fill in the public fields).
    pub fn new(repository: impl Into<String>) -> Self {
        AccessRule {
            repository: repository.into(),
            anonymous: Vec::new(),
            all_authenticated: Vec::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            push_implies_pull: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// User and group names: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.split_first() {
        None => false,
        Some((first, rest)) => {
            bytes.len() <= 64
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        }
    }
}

/// Log capture for tests that check what is (and is not) logged.
#[cfg(test)]
pub(crate) mod test_log {
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Captures everything logged on this thread while the guard lives.
    pub(crate) fn capture() -> (tracing::subscriber::DefaultGuard, Captured) {
        // tracing caches per call site whether anyone is interested. With no global
        // subscriber, a test on another thread can get a call site cached as "never"
        // while this thread's subscriber is in place, and its events vanish. A global
        // subscriber that wants everything (and writes it nowhere) keeps every call site
        // live, so each event reaches the current thread's subscriber.
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let sink = tracing_subscriber::fmt()
                .with_writer(io::sink)
                .with_max_level(tracing::Level::TRACE)
                .finish();
            let _ = tracing::subscriber::set_global_default(sink);
        });
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        (tracing::subscriber::set_default(subscriber), captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "admin", "bob.smith", "ci_bot-2", "0", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Bob",
            "-a",
            ".a",
            "_a",
            "a b",
            "a:b",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn user_entry_debug_hides_hash() {
        let e = UserEntry {
            name: "a".into(),
            password_hash: "$argon2id$secret".into(),
            groups: vec![],
            admin: false,
        };
        let settings = AuthSettings {
            users: vec![e],
            ..AuthSettings::default()
        };
        let text = format!("{settings:?}");
        assert!(!text.contains("argon2id"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }

    #[test]
    fn action_text() {
        assert_eq!(Action::Pull.to_string(), "pull");
        assert_eq!(Action::Push.to_string(), "push");
        assert_eq!(Action::Delete.to_string(), "delete");
        assert_eq!("push".parse::<Action>(), Ok(Action::Push));
        assert!("Pull".parse::<Action>().is_err());
    }

    #[test]
    fn settings_schema() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            auth: AuthSettings,
            #[serde(default)]
            access: Vec<AccessRule>,
        }
        let doc: Doc = toml::from_str(
            r#"
            [auth]
            realm = "registry.example"
            users_file = "/etc/holdfast/users.toml"
            htpasswd_files = ["/etc/docker/registry/htpasswd"]
            allow_delete = false
            cache_seconds = 30

            [auth.throttle]
            max_failures = 3

            [[auth.users]]
            name = "ci"
            password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
            groups = ["builders"]

            [[access]]
            repository = "public/*"
            anonymous = ["pull"]

            [[access]]
            repository = "team-a/*"
            groups = { "team-a" = ["pull", "push", "delete"] }
            users = { "bob" = ["pull"] }
            push_implies_pull = false
            "#,
        )
        .unwrap();
        assert_eq!(doc.auth.realm, "registry.example");
        assert!(!doc.auth.allow_delete);
        assert_eq!(doc.auth.throttle.max_failures, 3);
        assert_eq!(doc.auth.throttle.max_backoff_seconds, 60);
        assert_eq!(doc.auth.verify_concurrency, 2);
        assert_eq!(doc.auth.users[0].groups, vec!["builders".to_owned()]);
        assert!(!doc.auth.users[0].admin);
        assert_eq!(doc.access.len(), 2);
        assert_eq!(doc.access[0].anonymous, vec![Action::Pull]);
        assert!(doc.access[0].push_implies_pull);
        assert_eq!(doc.access[1].users["bob"], vec![Action::Pull]);
        assert!(!doc.access[1].push_implies_pull);

        let err = toml::from_str::<Doc>("[auth]\nrelam = \"x\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("relam"), "{err}");
        let err = toml::from_str::<Doc>(
            "[auth]\n[[access]]\nrepository = \"a\"\nanonymous = [\"pul\"]\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("pul"), "{err}");
    }
}
