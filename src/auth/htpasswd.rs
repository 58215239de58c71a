//! htpasswd files from CNCF distribution, read as an extra user source so a migration
//! needs no password resets. Only bcrypt lines (`htpasswd -B`) are accepted; any other
//! hash kind (MD5 `$apr1$`, SHA1 `{SHA}`, crypt, plain text) is refused line by line with
//! a warning that names the file, line and user, because accepting weak hashes would
//! silently lower the appliance's security.

use std::path::Path;

use super::hashes::check_bcrypt;

/// One accepted line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HtpasswdUser {
    pub(crate) name: String,
    pub(crate) hash: String,
    pub(crate) line: usize,
}

/// Longest user name accepted from an htpasswd file. Names there predate our grammar
/// (`[a-z0-9][a-z0-9._-]*`), so they are taken as they are, within reason.
const MAX_NAME_LEN: usize = 128;

/// Parses the text of `path`. Refused lines are logged and skipped; the rest are
/// returned in file order.
pub(crate) fn parse(path: &Path, text: &str) -> Vec<HtpasswdUser> {
    let mut users = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = content.split_once(':') else {
            tracing::warn!(
                file = %path.display(),
                line,
                "htpasswd line ignored: no `user:hash` separator"
            );
            continue;
        };
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            tracing::warn!(
                file = %path.display(),
                line,
                "htpasswd line ignored: unusable user name"
            );
            continue;
        }
        if let Err(why) = check_bcrypt(hash) {
            tracing::warn!(
                file = %path.display(),
                line,
                user = %name,
                reason = %why,
                "htpasswd line refused: only bcrypt hashes ($2y$/$2b$) are accepted; \
                 set a new password with `holdfast user passwd`"
            );
            continue;
        }
        users.push(HtpasswdUser {
            name: name.to_owned(),
            hash: hash.to_owned(),
            line,
        });
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bcrypt_refuses_the_rest() {
        let b = bcrypt::hash("pw", 4).unwrap();
        let y = b.replacen("$2b$", "$2y$", 1);
        let text = format!(
            "# migrated from distribution\n\
             alice:{y}\n\
             \n\
             md5user:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n\
             shauser:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
             plain:secret\n\
             cryptuser:rl0xpZVMnSOSg\n\
             nocolon\n\
             bob:{b}\r\n"
        );
        let (_guard, logs) = super::super::test_log::capture();
        let users = parse(Path::new("/etc/htpasswd"), &text);
        let logs = logs.text();
        for (user, line) in [
            ("md5user", 4),
            ("shauser", 5),
            ("plain", 6),
            ("cryptuser", 7),
        ] {
            let warning = logs
                .lines()
                .find(|l| l.contains(&format!("user={user}")))
                .unwrap_or_else(|| panic!("no warning for {user}: {logs}"));
            assert!(warning.contains("WARN"), "{warning}");
            assert!(warning.contains(&format!("line={line}")), "{warning}");
            assert!(warning.contains("file=/etc/htpasswd"), "{warning}");
        }
        assert!(logs.contains("line=8"), "line without separator: {logs}");
        assert!(
            !logs.contains("$apr1$") && !logs.contains("secret"),
            "hash logged: {logs}"
        );
        assert_eq!(
            users,
            vec![
                HtpasswdUser {
                    name: "alice".into(),
                    hash: y,
                    line: 2
                },
                HtpasswdUser {
                    name: "bob".into(),
                    hash: b,
                    line: 9
                },
            ]
        );
    }
}
