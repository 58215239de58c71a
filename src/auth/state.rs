//! [`AuthState`]: an immutable snapshot of the users (inline, users file, htpasswd files)
//! and the compiled access rules. Loading reads and checks everything up front, so a bad
//! file is an error that names the file and line, and a reload either swaps in a complete
//! new snapshot or keeps the old one.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::access::{self, CompiledRule};
use super::hashes::{check_argon2id, HashKind};
use super::{htpasswd, valid_name, AccessRule, Action, AuthSettings, Identity, UserEntry};

#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A problem in a users or htpasswd file; `line` is 1-based when known.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A problem in a user written inline in the main config (`[[auth.users]]`).
    #[error("[[auth.users]] entry {index} ({name:?}): {message}")]
    Inline {
        index: usize,
        name: String,
        message: String,
    },
    /// A problem in an `[[access]]` rule (counted from 1 in file order).
    #[error("[[access]] rule {index} (repository = {repository:?}): {message}")]
    Rule {
        index: usize,
        repository: String,
        message: String,
    },
}

/// One user as the authenticator needs it.
#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub(crate) kind: HashKind,
    pub(crate) hash: String,
    pub(crate) groups: Vec<String>,
    pub(crate) admin: bool,
}

/// Users and rules at one moment. Cheap to share (the authenticator holds it in an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct AuthState {
    users: HashMap<String, UserRecord>,
    /// Where each user was defined, for duplicate errors.
    origins: HashMap<String, String>,
    rules: Vec<CompiledRule>,
    allow_delete: bool,
}

/// The users file as serde sees it; spans give line numbers for semantic errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFileDoc {
    #[serde(default)]
    users: Vec<toml::Spanned<UserEntry>>,
}

impl AuthState {
    /// Reads the users file and htpasswd files named in `settings`, checks every user and
    /// compiles `rules`. A users file that does not exist counts as empty (first run,
    /// before [`super::ensure_initial_admin`] creates it); a missing htpasswd file is an
    /// error, since it was named explicitly for migration.
    pub fn load(settings: &AuthSettings, rules: &[AccessRule]) -> Result<AuthState, AuthLoadError> {
        let mut state = AuthState {
            allow_delete: settings.allow_delete,
            ..AuthState::default()
        };

        for (i, entry) in settings.users.iter().enumerate() {
            let inline = |message: String| AuthLoadError::Inline {
                index: i + 1,
                name: entry.name.clone(),
                message,
            };
            check_entry(entry).map_err(inline)?;
            state
                .insert(entry, format!("[[auth.users]] entry {}", i + 1))
                .map_err(inline)?;
        }

        if let Some(path) = &settings.users_file {
            state.load_users_file(path)?;
        }

        for path in &settings.htpasswd_files {
            let text = read_private(path)?;
            for user in htpasswd::parse(path, &text) {
                let origin = format!("{}:{}", path.display(), user.line);
                if let Some(other) = state.origins.get(&user.name) {
                    return Err(AuthLoadError::File {
                        path: path.clone(),
                        line: Some(user.line),
                        message: format!("user `{}` is already defined at {other}", user.name),
                    });
                }
                state.origins.insert(user.name.clone(), origin);
                state.users.insert(
                    user.name,
                    UserRecord {
                        kind: HashKind::Bcrypt,
                        hash: user.hash,
                        groups: Vec::new(),
                        admin: false,
                    },
                );
            }
        }

        for (i, rule) in rules.iter().enumerate() {
            let compiled = CompiledRule::compile(rule).map_err(|e| AuthLoadError::Rule {
                index: i + 1,
                repository: rule.repository.clone(),
                message: e.to_string(),
            })?;
            // Names in rules that match nobody are not errors (users come and go), but
            // they are usually typos, so say so.
            for name in compiled.user_names() {
                if !state.users.contains_key(name) {
                    tracing::warn!(
                        rule = i + 1,
                        repository = %rule.repository,
                        user = %name,
                        "access rule names a user that does not exist"
                    );
                }
            }
            for group in compiled.group_names() {
                if !state
                    .users
                    .values()
                    .any(|u| u.groups.iter().any(|g| g == group))
                {
                    tracing::warn!(
                        rule = i + 1,
                        repository = %rule.repository,
                        group = %group,
                        "access rule names a group that no user belongs to"
                    );
                }
            }
            state.rules.push(compiled);
        }
        Ok(state)
    }

    fn load_users_file(&mut self, path: &Path) -> Result<(), AuthLoadError> {
        let text = match read_private(path) {
            Ok(text) => text,
            Err(AuthLoadError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                tracing::info!(file = %path.display(), "users file does not exist yet: no users from it");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let file_error = |line: Option<usize>, message: String| AuthLoadError::File {
            path: path.to_owned(),
            line,
            message,
        };
        let doc: UsersFileDoc = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            file_error(line, e.message().trim_end().to_owned())
        })?;
        for spanned in &doc.users {
            let line = line_of(&text, spanned.span().start);
            let entry = spanned.get_ref();
            check_entry(entry)
                .map_err(|m| file_error(Some(line), format!("user {:?}: {m}", entry.name)))?;
            let origin = format!("{}:{line}", path.display());
            self.insert(entry, origin)
                .map_err(|m| file_error(Some(line), m))?;
        }
        Ok(())
    }

    fn insert(&mut self, entry: &UserEntry, origin: String) -> Result<(), String> {
        if let Some(other) = self.origins.get(&entry.name) {
            return Err(format!(
                "user `{}` is already defined at {other}",
                entry.name
            ));
        }
        self.origins.insert(entry.name.clone(), origin);
        self.users.insert(
            entry.name.clone(),
            UserRecord {
                kind: HashKind::Argon2id,
                hash: entry.password_hash.clone(),
                groups: entry.groups.clone(),
                admin: entry.admin,
            },
        );
        Ok(())
    }

    pub(crate) fn user(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(name)
    }

    /// How many users exist across all sources (0 on first run).
    /// Whether deletes are allowed at all (`[auth] allow_delete`).
    /// The identity of an existing user, without checking a password (for callers that
    /// proved who they are another way, such as a refresh token).
    pub fn identity_of(&self, name: &str) -> Option<Identity> {
        self.user(name).map(|u| Identity {
            user: Some(name.to_owned()),
            groups: u.groups.clone(),
            admin: u.admin,
        })
    }

    /// Whether `name` signs in with the same password hash in `other` (false when the user
    /// is gone there): refresh tokens outlive neither a password change nor a removal.
    pub fn same_credentials(&self, other: &AuthState, name: &str) -> bool {
        match (self.user(name), other.user(name)) {
            (Some(a), Some(b)) => a.hash == b.hash,
            _ => false,
        }
    }

    pub fn deletes_allowed(&self) -> bool {
        self.allow_delete
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether `name` is a known user.
    pub fn has_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The known user names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.keys().cloned().collect();
        names.sort();
        names
    }

    /// The access decision under this snapshot's rules (see [`AccessRule`] for the
    /// semantics).
    pub fn allowed(&self, identity: &Identity, repository: &str, action: Action) -> bool {
        access::allowed(&self.rules, self.allow_delete, identity, repository, action)
    }
}

/// The checks every argon2id user gets, wherever it is written.
fn check_entry(entry: &UserEntry) -> Result<(), String> {
    if !valid_name(&entry.name) {
        return Err("user names must match [a-z0-9][a-z0-9._-]{0,63}".to_owned());
    }
    if let Some(g) = entry.groups.iter().find(|g| !valid_name(g)) {
        return Err(format!(
            "group {g:?}: group names must match [a-z0-9][a-z0-9._-]{{0,63}}"
        ));
    }
    check_argon2id(&entry.password_hash)
}

/// Reads a file holding password hashes, warning when others than the owner may read it
/// (hashes are offline-guessable, so they deserve the care of a private key).
fn read_private(path: &Path) -> Result<String, AuthLoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format!("{mode:04o}"),
                    "file with password hashes is readable by others; chmod 600 it"
                );
            }
        }
    }
    Ok(text)
}

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    let end = pos.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::super::hashes::tests::cheap_argon2id;
    use super::*;
    use std::io::Write as _;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        path
    }

    #[test]
    fn loads_all_sources() {
        let dir = tempfile::tempdir().unwrap();
        let h = cheap_argon2id("pw");
        let users = write(
            dir.path(),
            "users.toml",
            &format!(
                "# users\n[[users]]\nname = \"alice\"\npassword_hash = \"{h}\"\ngroups = [\"team-a\"]\n\n\
                 [[users]]\nname = \"root\"\npassword_hash = \"{h}\"\nadmin = true\n"
            ),
        );
        let ht = write(
            dir.path(),
            "htpasswd",
            &format!("old:{}\nweak:$apr1$x$y\n", bcrypt::hash("pw", 4).unwrap()),
        );
        let settings = AuthSettings {
            users_file: Some(users),
            htpasswd_files: vec![ht],
            users: vec![UserEntry {
                name: "inline".into(),
                password_hash: h.clone(),
                groups: vec![],
                admin: false,
            }],
            ..AuthSettings::default()
        };
        let state = AuthState::load(&settings, &[]).unwrap();
        assert_eq!(state.user_names(), vec!["alice", "inline", "old", "root"]);
        assert!(!state.has_user("weak"));
        assert_eq!(state.user("old").unwrap().kind, HashKind::Bcrypt);
        assert!(state.user("root").unwrap().admin);
        assert_eq!(state.user("alice").unwrap().groups, vec!["team-a"]);
    }

    #[test]
    fn missing_users_file_is_empty_missing_htpasswd_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuthSettings {
            users_file: Some(dir.path().join("nope.toml")),
            ..AuthSettings::default()
        };
        assert_eq!(AuthState::load(&settings, &[]).unwrap().user_count(), 0);
        let settings = AuthSettings {
            htpasswd_files: vec![dir.path().join("nope")],
            ..AuthSettings::default()
        };
        let err = AuthState::load(&settings, &[]).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let h = cheap_argon2id("pw");
        let cases = [
            (
                format!("[[users]]\nname = \"a\"\npassword_hash = \"{h}\"\n\n[[users]]\nname = \"Bad Name\"\npassword_hash = \"{h}\"\n"),
                ":5:",
                "user names",
            ),
            (
                format!("[[users]]\nname = \"a\"\npassword_hash = \"{h}\"\n[[users]]\nname = \"a\"\npassword_hash = \"{h}\"\n"),
                ":4:",
                "already defined at",
            ),
            (
                format!(
                    "\n\n[[users]]\nname = \"a\"\npassword_hash = \"{}\"\n",
                    bcrypt::hash("pw", 4).unwrap()
                ),
                ":3:",
                "htpasswd",
            ),
            (
                format!("[[users]]\nname = \"a\"\npasword_hash = \"{h}\"\n"),
                ":3:",
                "pasword_hash",
            ),
            ("[[users]\n".to_owned(), ":1:", ""),
            (
                format!("[[users]]\nname = \"a\"\npassword_hash = \"{h}\"\ngroups = [\"Team A\"]\n"),
                ":1:",
                "group",
            ),
        ];
        for (text, line, needle) in cases {
            let path = write(dir.path(), "users.toml", &text);
            let settings = AuthSettings {
                users_file: Some(path),
                ..AuthSettings::default()
            };
            let err = AuthState::load(&settings, &[]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("users.toml{line}")),
                "{err} (want {line})"
            );
            assert!(err.contains(needle), "{err} (want {needle})");
            assert!(!err.contains("$argon2id$"), "error echoes a hash: {err}");
        }
    }

    #[test]
    fn duplicate_between_inline_and_htpasswd() {
        let dir = tempfile::tempdir().unwrap();
        let ht = write(
            dir.path(),
            "htpasswd",
            &format!("\nbob:{}\n", bcrypt::hash("pw", 4).unwrap()),
        );
        let settings = AuthSettings {
            htpasswd_files: vec![ht],
            users: vec![UserEntry {
                name: "bob".into(),
                password_hash: cheap_argon2id("pw"),
                groups: vec![],
                admin: false,
            }],
            ..AuthSettings::default()
        };
        let err = AuthState::load(&settings, &[]).unwrap_err().to_string();
        assert!(err.contains("htpasswd:2"), "{err}");
        assert!(err.contains("[[auth.users]] entry 1"), "{err}");
    }

    #[test]
    fn bad_rule_is_an_error() {
        let mut rule = AccessRule::new("Team/*");
        rule.anonymous = vec![Action::Pull];
        let err = AuthState::load(&AuthSettings::default(), &[AccessRule::new("ok/*"), rule])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rule 2"), "{err}");
        assert!(err.contains("Team/*"), "{err}");
    }

    #[test]
    fn state_decides_with_allow_delete() {
        let mut rule = AccessRule::new("*");
        rule.all_authenticated = vec![Action::Pull, Action::Push, Action::Delete];
        let bob = Identity {
            user: Some("bob".into()),
            ..Identity::default()
        };
        let on = AuthState::load(&AuthSettings::default(), std::slice::from_ref(&rule)).unwrap();
        assert!(on.allowed(&bob, "a/b", Action::Delete));
        let settings = AuthSettings {
            allow_delete: false,
            ..AuthSettings::default()
        };
        let off = AuthState::load(&settings, &[rule]).unwrap();
        assert!(!off.allowed(&bob, "a/b", Action::Delete));
        assert!(off.allowed(&bob, "a/b", Action::Push));
    }
}
