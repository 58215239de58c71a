//! Editing the users file for `holdfast user add|passwd|remove|list` and the first-run
//! admin. Edits go through `toml_edit`, so the operator's comments, blank lines and key
//! order survive; every write is atomic (temporary file in the same directory, fsync,
//! rename, fsync of the directory) with mode 0600 and the previous owner, so a crash
//! leaves either the old or the new file and `sudo holdfast user …` does not hand the
//! file to root.
//!
//! The file holds one `[[users]]` table per user (`name`, `password_hash`, optional
//! `groups` and `admin`); `users = [{ … }, …]` written inline is read and edited too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHasher};
use serde::Deserialize;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::{valid_name, UserEntry};

/// Name of the file in the data folder that receives the first admin's password.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Name of the user created on first run.
pub const INITIAL_ADMIN_NAME: &str = "admin";

/// Shortest password `user add`/`user passwd` accept. Short passwords on a network
/// service are guessable despite throttling; 8 is the floor of NIST SP 800-63B.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Longest password accepted, in bytes (the authenticator refuses longer ones unhashed,
/// so a longer password could never be used).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Length of the generated first-admin password (alphanumerics: about 143 bits).
const GENERATED_PASSWORD_LEN: usize = 24;

/// What a newly created users file starts with.
const NEW_FILE_HEADER: &str = "\
# holdfast users: one [[users]] table per user.
# Managed with `holdfast user add|passwd|remove|list`; hand edits and comments are kept.
# Keys: name, password_hash (argon2id PHC string), groups = [..] (optional),
# admin = true (optional: may do everything everywhere).
";

#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("no user `{0}` in the users file")]
    NoSuchUser(String),
    #[error("invalid user name {0:?}: names must match [a-z0-9][a-z0-9._-]{{0,63}}")]
    InvalidName(String),
    #[error("invalid group name {0:?}: names must match [a-z0-9][a-z0-9._-]{{0,63}}")]
    InvalidGroup(String),
    #[error("password rejected: {0}")]
    Password(String),
    #[error("cannot hash password: {0}")]
    Hash(String),
    #[error("no randomness available: {0}")]
    Random(String),
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> UsersFileError + 'a {
    move |source| UsersFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// argon2id with the crate's default parameters (m=19 MiB, t=2, p=1) and a random salt,
/// as a PHC string.
pub fn hash_password(password: &str) -> Result<String, UsersFileError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UsersFileError::Hash(e.to_string()))
}

/// The password rules for new passwords.
pub fn check_new_password(password: &str) -> Result<(), UsersFileError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UsersFileError::Password(format!(
            "shorter than {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UsersFileError::Password(format!(
            "longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(UsersFileError::Password(
            "contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Reads a new password for the CLI: from the terminal without echo (asked twice when
/// `confirm`), or, with `--password-stdin`, the first line of standard input.
pub fn read_password(from_stdin: bool, confirm: bool) -> Result<String, UsersFileError> {
    let stdin_path = Path::new("standard input");
    if from_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .take(MAX_PASSWORD_LEN as u64 + 2)
            .read_line(&mut line)
            .map_err(io_error("read password from", stdin_path))?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        return Ok(password.to_owned());
    }
    let tty = Path::new("the terminal");
    let password =
        rpassword::prompt_password("Password: ").map_err(io_error("read password from", tty))?;
    if confirm {
        let again = rpassword::prompt_password("Repeat password: ")
            .map_err(io_error("read password from", tty))?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            password.as_bytes(),
            again.as_bytes(),
        )) {
            return Err(UsersFileError::Password(
                "the two passwords differ".to_owned(),
            ));
        }
    }
    Ok(password)
}

/// Adds a user; an error if the name is taken. Creates the file (0600, with a header
/// comment) if it does not exist.
pub fn add_user(
    path: &Path,
    name: &str,
    password: &str,
    groups: &[String],
    admin: bool,
) -> Result<(), UsersFileError> {
    add_user_with(path, name, password, groups, admin, hash_password)
}

fn add_user_with(
    path: &Path,
    name: &str,
    password: &str,
    groups: &[String],
    admin: bool,
    hasher: fn(&str) -> Result<String, UsersFileError>,
) -> Result<(), UsersFileError> {
    if !valid_name(name) {
        return Err(UsersFileError::InvalidName(name.to_owned()));
    }
    if let Some(g) = groups.iter().find(|g| !valid_name(g)) {
        return Err(UsersFileError::InvalidGroup(g.clone()));
    }
    check_new_password(password)?;
    let text = read_or_new(path)?;
    let mut doc = parse(path, &text)?;
    if existing_users(path, &text)?.iter().any(|u| u.name == name) {
        return Err(UsersFileError::UserExists(name.to_owned()));
    }
    let hash = hasher(password)?;
    push_user(path, &mut doc, name, &hash, groups, admin)?;
    write_atomically(path, doc.to_string().as_bytes())
}

/// Replaces a user's password hash, keeping the line's formatting and comments.
pub fn set_password(path: &Path, name: &str, password: &str) -> Result<(), UsersFileError> {
    set_password_with(path, name, password, hash_password)
}

fn set_password_with(
    path: &Path,
    name: &str,
    password: &str,
    hasher: fn(&str) -> Result<String, UsersFileError>,
) -> Result<(), UsersFileError> {
    check_new_password(password)?;
    let text = read_existing(path)?;
    let mut doc = parse(path, &text)?;
    existing_users(path, &text)?;
    let hash = hasher(password)?;
    let mut found = false;
    with_user_mut(path, &mut doc, name, |mut user| {
        found = true;
        user.set("password_hash", &hash);
    })?;
    if !found {
        return Err(UsersFileError::NoSuchUser(name.to_owned()));
    }
    write_atomically(path, doc.to_string().as_bytes())
}

/// Removes a user together with the comment lines directly above its table; a comment
/// separated from it by a blank line belongs to what comes before and stays.
pub fn remove_user(path: &Path, name: &str) -> Result<(), UsersFileError> {
    let text = read_existing(path)?;
    let mut doc = parse(path, &text)?;
    existing_users(path, &text)?;
    let mut keep_comment = None;
    let removed = match doc.get_mut("users") {
        Some(Item::ArrayOfTables(tables)) => {
            let index = tables
                .iter()
                .position(|t| t.get("name").and_then(Item::as_str) == Some(name));
            match index {
                Some(i) => {
                    let table = tables.remove(i);
                    let prefix = table
                        .decor()
                        .prefix()
                        .and_then(|p| p.as_str())
                        .unwrap_or("");
                    let detached = detached_comment(prefix);
                    if !detached.is_empty() {
                        match tables.get_mut(i) {
                            Some(next) => {
                                let next_prefix = next
                                    .decor()
                                    .prefix()
                                    .and_then(|p| p.as_str())
                                    .unwrap_or("")
                                    .to_owned();
                                next.decor_mut()
                                    .set_prefix(join_paragraphs(detached, &next_prefix));
                            }
                            None => keep_comment = Some(detached.to_owned()),
                        }
                    }
                    true
                }
                None => false,
            }
        }
        Some(Item::Value(Value::Array(array))) => {
            let index = array.iter().position(|v| {
                v.as_inline_table()
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                    == Some(name)
            });
            match index {
                Some(i) => {
                    array.remove(i);
                    true
                }
                None => false,
            }
        }
        _ => false,
    };
    if !removed {
        return Err(UsersFileError::NoSuchUser(name.to_owned()));
    }
    if let Some(comment) = keep_comment {
        // The removed table was the last one: its detached comment moves to the end.
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(join_paragraphs(&comment, &trailing));
    }
    write_atomically(path, doc.to_string().as_bytes())
}

/// `(name, groups, admin)` for each user in the file, in file order. A missing file has
/// no users.
pub fn list_users(path: &Path) -> Result<Vec<(String, Vec<String>, bool)>, UsersFileError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    Ok(existing_users(path, &text)?
        .into_iter()
        .map(|u| (u.name, u.groups, u.admin))
        .collect())
}

/// First run: if the users file has no users, creates `admin` (admin = true) with a
/// random password, writes that password to `<data_dir>/initial-admin-password` (0600)
/// and returns it so the caller can print it once. Returns `None` when users exist.
///
/// This looks at the users file only; the caller should call it only when no other
/// source (inline users, htpasswd files) has users either, e.g. when
/// `AuthState::load(..)?.user_count() == 0`.
pub fn ensure_initial_admin(
    users_file: &Path,
    data_dir: &Path,
) -> Result<Option<String>, UsersFileError> {
    ensure_initial_admin_with(users_file, data_dir, hash_password)
}

fn ensure_initial_admin_with(
    users_file: &Path,
    data_dir: &Path,
    hasher: fn(&str) -> Result<String, UsersFileError>,
) -> Result<Option<String>, UsersFileError> {
    if !list_users(users_file)?.is_empty() {
        return Ok(None);
    }
    let password = random_password()?;
    fs::create_dir_all(data_dir).map_err(io_error("create", data_dir))?;
    let password_file = data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
    // The password file first: if writing the users file then fails, nothing is locked
    // out (the next start tries again); the other order could leave an admin whose
    // password nobody knows.
    write_atomically(&password_file, format!("{password}\n").as_bytes())?;
    add_user_with(users_file, INITIAL_ADMIN_NAME, &password, &[], true, hasher)?;
    tracing::warn!(
        target: super::AUDIT_TARGET,
        event = "initial_admin_created",
        users_file = %users_file.display(),
        password_file = %password_file.display(),
        "created user `admin`; its password is in the password file: change it with \
         `holdfast user passwd admin` and delete that file"
    );
    Ok(Some(password))
}

/// `GENERATED_PASSWORD_LEN` characters from `[A-Za-z0-9]`, unbiased (bytes ≥ 248 are
/// rejected so that every character is equally likely).
fn random_password() -> Result<String, UsersFileError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(GENERATED_PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while out.len() < GENERATED_PASSWORD_LEN {
        getrandom::fill(&mut buf).map_err(|e| UsersFileError::Random(e.to_string()))?;
        for &b in &buf {
            if usize::from(b) < 248 && out.len() < GENERATED_PASSWORD_LEN {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

fn read_or_new(path: &Path) -> Result<String, UsersFileError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(NEW_FILE_HEADER.to_owned()),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn read_existing(path: &Path) -> Result<String, UsersFileError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut, UsersFileError> {
    text.parse::<DocumentMut>()
        .map_err(|e| UsersFileError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

/// The users per the file's schema. A file that does not even have that shape is not
/// edited (the CLI must not bury its error under more edits); a user whose hash the server
/// rejects can still be fixed with `passwd`.
fn existing_users(path: &Path, text: &str) -> Result<Vec<UserEntry>, UsersFileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        users: Vec<UserEntry>,
    }
    toml::from_str::<Doc>(text)
        .map(|d| d.users)
        .map_err(|e| UsersFileError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

/// A user table, whichever way it is written.
enum UserMut<'a> {
    Table(&'a mut Table),
    Inline(&'a mut InlineTable),
}

impl UserMut<'_> {
    /// Sets a string field, keeping the old value's surrounding spaces and trailing
    /// comment.
    fn set(&mut self, key: &str, new: &str) {
        let slot = match self {
            UserMut::Table(t) => t.get_mut(key).and_then(Item::as_value_mut),
            UserMut::Inline(t) => t.get_mut(key),
        };
        match slot {
            Some(value) => {
                let decor = value.decor().clone();
                *value = Value::from(new);
                *value.decor_mut() = decor;
            }
            None => match self {
                UserMut::Table(t) => {
                    t.insert(key, toml_edit::value(new));
                }
                UserMut::Inline(t) => {
                    t.insert(key, Value::from(new));
                }
            },
        }
    }
}

fn with_user_mut(
    path: &Path,
    doc: &mut DocumentMut,
    name: &str,
    f: impl FnOnce(UserMut<'_>),
) -> Result<(), UsersFileError> {
    match doc.get_mut("users") {
        None => Ok(()),
        Some(Item::ArrayOfTables(tables)) => {
            if let Some(t) = tables
                .iter_mut()
                .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
            {
                f(UserMut::Table(t));
            }
            Ok(())
        }
        Some(Item::Value(Value::Array(array))) => {
            if let Some(t) = array
                .iter_mut()
                .filter_map(Value::as_inline_table_mut)
                .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            {
                f(UserMut::Inline(t));
            }
            Ok(())
        }
        Some(_) => Err(not_a_list(path)),
    }
}

fn not_a_list(path: &Path) -> UsersFileError {
    UsersFileError::Parse {
        path: path.to_owned(),
        message: "`users` must be a list of tables ([[users]])".to_owned(),
    }
}

fn push_user(
    path: &Path,
    doc: &mut DocumentMut,
    name: &str,
    hash: &str,
    groups: &[String],
    admin: bool,
) -> Result<(), UsersFileError> {
    let groups_value = || Value::Array(groups.iter().map(String::as_str).collect::<Array>());
    match doc.get_mut("users") {
        Some(Item::ArrayOfTables(tables)) => {
            let mut t = user_table(name, hash);
            if !groups.is_empty() {
                t.insert("groups", Item::Value(groups_value()));
            }
            if admin {
                t.insert("admin", toml_edit::value(true));
            }
            t.decor_mut().set_prefix("\n");
            tables.push(t);
        }
        Some(Item::Value(Value::Array(array))) => {
            let mut t = InlineTable::new();
            t.insert("name", Value::from(name));
            t.insert("password_hash", Value::from(hash));
            if !groups.is_empty() {
                t.insert("groups", groups_value());
            }
            if admin {
                t.insert("admin", Value::from(true));
            }
            array.push(t);
        }
        Some(_) => return Err(not_a_list(path)),
        None => {
            let mut t = user_table(name, hash);
            if !groups.is_empty() {
                t.insert("groups", Item::Value(groups_value()));
            }
            if admin {
                t.insert("admin", toml_edit::value(true));
            }
            // A file of comments only keeps them in the document's trailing text, which
            // is printed last; move them above the first user so they stay on top.
            let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
            if !trailing.trim().is_empty() {
                let sep = if trailing.ends_with("\n\n") { "" } else { "\n" };
                t.decor_mut().set_prefix(format!("{trailing}{sep}"));
                doc.set_trailing("");
            } else if !doc.as_table().is_empty() {
                t.decor_mut().set_prefix("\n");
            }
            let mut tables = ArrayOfTables::new();
            tables.push(t);
            doc.insert("users", Item::ArrayOfTables(tables));
        }
    }
    Ok(())
}

fn user_table(name: &str, hash: &str) -> Table {
    let mut t = Table::new();
    t.insert("name", toml_edit::value(name));
    t.insert("password_hash", toml_edit::value(hash));
    t
}

/// The part of a table's leading whitespace/comments that ends at its last blank line:
/// a comment paragraph separated from the table, so it is not the table's own. Only
/// returned if it holds a comment (moving bare blank lines around would pile them up).
fn detached_comment(prefix: &str) -> &str {
    let mut end = 0;
    let mut offset = 0;
    for line in prefix.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() && line.ends_with('\n') {
            end = offset;
        }
    }
    let detached = &prefix[..end];
    if detached.contains('#') {
        detached
    } else {
        ""
    }
}

/// `first` (a comment paragraph) and then `rest`, with exactly one blank line between them
/// however many each brought along.
fn join_paragraphs(first: &str, rest: &str) -> String {
    let first = first.trim_end_matches(['\n', '\r', ' ', '\t']);
    let mut rest = rest;
    while let Some(line_end) = rest.find('\n') {
        if rest[..line_end].trim().is_empty() {
            rest = &rest[line_end + 1..];
        } else {
            break;
        }
    }
    format!("{first}\n\n{rest}")
}

/// Replaces `path` atomically with `contents`, mode 0600, keeping the old file's owner
/// and group (when running as root) and following a symlink to its target.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), UsersFileError> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(io_error("resolve", path))?
        }
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| UsersFileError::Io {
            action: "write",
            path: target.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        })?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| UsersFileError::Random(e.to_string()))?;
    let tmp = dir.join(format!(".{file_name}.{}.tmp", hex::encode(nonce)));

    let result = write_then_rename(&target, &tmp, &dir, contents);
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    target: &Path,
    tmp: &Path,
    dir: &Path,
    contents: &[u8],
) -> Result<(), UsersFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(tmp).map_err(io_error("create", tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // The umask can only remove bits; set 0600 exactly so the owner can read it.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_error("set permissions of", tmp))?;
        if let Ok(old) = fs::metadata(target) {
            let new = file.metadata().map_err(io_error("inspect", tmp))?;
            if old.uid() != new.uid() || old.gid() != new.gid() {
                std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))
                    .map_err(io_error("keep the owner of", target))?;
            }
        }
    }
    file.write_all(contents).map_err(io_error("write", tmp))?;
    file.sync_all().map_err(io_error("sync", tmp))?;
    drop(file);
    fs::rename(tmp, target).map_err(io_error("replace", target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::super::hashes::tests::cheap_argon2id;
    use super::super::{AuthSettings, AuthState};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cheap(password: &str) -> Result<String, UsersFileError> {
        Ok(cheap_argon2id(password))
    }

    fn add(
        path: &Path,
        name: &str,
        password: &str,
        groups: &[&str],
        admin: bool,
    ) -> Result<(), UsersFileError> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        add_user_with(path, name, password, &groups, admin, cheap)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The file loads in the server and `name` verifies with `password`.
    fn verifies(path: &Path, name: &str, password: &str) -> bool {
        let settings = AuthSettings {
            users_file: Some(path.to_owned()),
            ..AuthSettings::default()
        };
        let state = AuthState::load(&settings, &[]).unwrap();
        let user = state.user(name).unwrap();
        super::super::hashes::verify(user.kind, &user.hash, password.as_bytes()).unwrap()
    }

    #[test]
    fn hash_password_is_default_argon2id() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        super::super::hashes::check_argon2id(&h).unwrap();
        assert!(super::super::hashes::verify(
            super::super::hashes::HashKind::Argon2id,
            &h,
            b"correct horse battery"
        )
        .unwrap());
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn add_creates_private_file_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add(&path, "alice", "password1", &["team-a", "ops"], false).unwrap();
        add(&path, "root", "password2", &[], true).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            list_users(&path).unwrap(),
            vec![
                (
                    "alice".to_owned(),
                    vec!["team-a".to_owned(), "ops".to_owned()],
                    false
                ),
                ("root".to_owned(), vec![], true),
            ]
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# holdfast users"), "{text}");
        assert!(verifies(&path, "alice", "password1"));
        assert!(matches!(
            add(&path, "alice", "password3", &[], false),
            Err(UsersFileError::UserExists(_))
        ));
        assert!(matches!(
            add(&path, "Alice", "password3", &[], false),
            Err(UsersFileError::InvalidName(_))
        ));
        assert!(matches!(
            add(&path, "carol", "password3", &["Team A"], false),
            Err(UsersFileError::InvalidGroup(_))
        ));
        assert!(matches!(
            add(&path, "carol", "short", &[], false),
            Err(UsersFileError::Password(_))
        ));
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["users.toml"]);
    }

    const HAND_WRITTEN: &str = r#"# Users of the build farm registry.
# Ask ops before adding people.

# Alice runs the team-a pipelines.
[[users]]
name     = "alice"          # aligned by hand
password_hash = "HASH_A"   # rotated 2026-01
groups   = [ "team-a" ]

# --- service accounts ---

# CI robot
[[users]]
name = "ci"
password_hash = "HASH_C"

[[users]]
name = "zed"
password_hash = "HASH_Z"
admin = true
# trailing remark
"#;

    fn hand_written(dir: &Path) -> PathBuf {
        let text = HAND_WRITTEN
            .replace("HASH_A", &cheap_argon2id("alice-pass"))
            .replace("HASH_C", &cheap_argon2id("ci-pass-1"))
            .replace("HASH_Z", &cheap_argon2id("zed-pass-1"));
        let path = dir.join("users.toml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn passwd_keeps_layout_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_written(dir.path());
        let before = fs::read_to_string(&path).unwrap();
        set_password_with(&path, "alice", "new-alice-pass", cheap).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        let changed: Vec<(&str, &str)> = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1, "{after}");
        assert!(changed[0].1.starts_with("password_hash = \"$argon2id$"));
        assert!(
            changed[0].1.ends_with("\"   # rotated 2026-01"),
            "{}",
            changed[0].1
        );
        assert_eq!(before.lines().count(), after.lines().count());
        assert!(verifies(&path, "alice", "new-alice-pass"));
        assert!(!verifies(&path, "alice", "alice-pass"));
        assert!(verifies(&path, "ci", "ci-pass-1"));
        assert!(matches!(
            set_password_with(&path, "nobody", "whatever-1", cheap),
            Err(UsersFileError::NoSuchUser(_))
        ));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn add_appends_after_last_user_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_written(dir.path());
        let before = fs::read_to_string(&path).unwrap();
        add(&path, "bob", "bob-password", &["team-b"], false).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        // Everything before stays byte for byte except where the new table goes.
        let zed_end = before.find("admin = true\n").unwrap() + "admin = true\n".len();
        assert!(after.starts_with(&before[..zed_end]), "{after}");
        let rest = &after[zed_end..];
        assert!(
            rest.starts_with("\n[[users]]\nname = \"bob\"\npassword_hash = \"$argon2id$"),
            "{rest}"
        );
        assert!(rest.contains("groups = [\"team-b\"]"), "{rest}");
        assert!(after.contains("# trailing remark"), "{after}");
        assert_eq!(list_users(&path).unwrap().len(), 4);
    }

    #[test]
    fn remove_takes_attached_comment_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_written(dir.path());
        remove_user(&path, "ci").unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert!(!after.contains("# CI robot"), "{after}");
        assert!(after.contains("# --- service accounts ---"), "{after}");
        assert!(
            after.contains("# Alice runs the team-a pipelines."),
            "{after}"
        );
        assert!(after.contains("name     = \"alice\"          # aligned by hand"));
        assert_eq!(
            list_users(&path)
                .unwrap()
                .iter()
                .map(|u| u.0.as_str())
                .collect::<Vec<_>>(),
            vec!["alice", "zed"]
        );

        // Removing the first user keeps the file header.
        remove_user(&path, "alice").unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(
                "# Users of the build farm registry.\n# Ask ops before adding people.\n"
            ),
            "{after}"
        );
        assert!(!after.contains("Alice runs"), "{after}");

        // Removing the last one keeps the detached comment.
        remove_user(&path, "zed").unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert!(
            after.contains("# Users of the build farm registry."),
            "{after}"
        );
        assert!(after.contains("# --- service accounts ---"), "{after}");
        assert!(list_users(&path).unwrap().is_empty());
        assert!(matches!(
            remove_user(&path, "zed"),
            Err(UsersFileError::NoSuchUser(_))
        ));
        // And adding again works on the now user-less file.
        add(&path, "new", "new-password", &[], false).unwrap();
        assert!(verifies(&path, "new", "new-password"));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn inline_array_form_is_edited_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(
            &path,
            format!(
                "# compact\nusers = [\n  {{ name = \"a\", password_hash = \"{}\" }},\n]\n",
                cheap_argon2id("a-password")
            ),
        )
        .unwrap();
        add(&path, "b", "b-password", &["g"], true).unwrap();
        set_password_with(&path, "a", "a-password-2", cheap).unwrap();
        assert!(verifies(&path, "a", "a-password-2"));
        assert!(verifies(&path, "b", "b-password"));
        remove_user(&path, "a").unwrap();
        assert_eq!(
            list_users(&path).unwrap(),
            vec![("b".to_owned(), vec!["g".to_owned()], true)]
        );
        assert!(fs::read_to_string(&path)
            .unwrap()
            .starts_with("# compact\n"));
    }

    #[test]
    fn comments_only_file_keeps_comments_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "# our users\n# more words\n").unwrap();
        add(&path, "a", "a-password", &[], false).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# our users\n# more words\n\n[[users]]\nname = \"a\"\n"),
            "{text}"
        );
    }

    #[test]
    fn broken_file_is_not_edited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        fs::write(&path, "[[users]]\nname = \"a\"\npasword_hash = \"x\"\n").unwrap();
        let err = add(&path, "b", "b-password", &[], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pasword_hash"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[[users]]\nname = \"a\"\npasword_hash = \"x\"\n"
        );
        fs::write(&path, "users = 3\n").unwrap();
        assert!(add(&path, "b", "b-password", &[], false).is_err());
    }

    #[test]
    fn atomic_write_mode_owner_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        fs::write(&real, "old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(mode(&real), 0o600);
        // A reader that opened the old file keeps reading the old content (rename, not
        // truncate-and-rewrite).
        let mut old = File::open(&real).unwrap();
        write_atomically(&real, b"newer").unwrap();
        let mut s = String::new();
        old.read_to_string(&mut s).unwrap();
        assert_eq!(s, "new");
        assert_eq!(fs::read_to_string(&real).unwrap(), "newer");
    }

    #[test]
    fn initial_admin_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let users = data.join("users.toml");
        let password = ensure_initial_admin_with(&users, &data, cheap)
            .unwrap()
            .unwrap();
        assert!(password.len() >= 20);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        let file = data.join(INITIAL_ADMIN_PASSWORD_FILE);
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{password}\n"));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&users), 0o600);
        assert_eq!(
            list_users(&users).unwrap(),
            vec![("admin".to_owned(), vec![], true)]
        );
        assert!(verifies(&users, "admin", &password));
        // Second run: nothing happens, the password is not returned again.
        assert_eq!(
            ensure_initial_admin_with(&users, &data, cheap).unwrap(),
            None
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{password}\n"));
        // Two first runs never produce the same password.
        let other = tempfile::tempdir().unwrap();
        let p2 = ensure_initial_admin_with(&other.path().join("u.toml"), other.path(), cheap)
            .unwrap()
            .unwrap();
        assert_ne!(password, p2);
    }

    #[test]
    fn initial_admin_skipped_when_file_has_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        add(&path, "alice", "password1", &[], false).unwrap();
        assert_eq!(
            ensure_initial_admin_with(&path, dir.path(), cheap).unwrap(),
            None
        );
        assert!(!dir.path().join(INITIAL_ADMIN_PASSWORD_FILE).exists());
    }

    #[test]
    fn paragraphs_join_with_one_blank_line() {
        assert_eq!(join_paragraphs("# a\n\n\n", "\n\n# b\n"), "# a\n\n# b\n");
        assert_eq!(join_paragraphs("# a\n\n", ""), "# a\n\n");
        assert_eq!(join_paragraphs("# a\n\n", "  \n# b\n"), "# a\n\n# b\n");
    }

    #[test]
    fn detached_comment_split() {
        assert_eq!(detached_comment(""), "");
        assert_eq!(detached_comment("\n"), "");
        assert_eq!(detached_comment("# attached\n"), "");
        assert_eq!(detached_comment("# a\n\n# b\n"), "# a\n\n");
        assert_eq!(detached_comment("\n# a\n\n\n# b\n"), "\n# a\n\n\n");
    }
}
