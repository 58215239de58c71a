//! The vocabulary of Docker token authentication that both sides share: a [`Scope`] is
//! what a client asks the token service for (`repository:samalba/my-app:pull,push`,
//! `repository(plugin):NAME:pull`, `registry:catalog:*`), and a [`GrantedAccess`] is
//! one entry of the `access` claim that the token service signs and the registry reads
//! back. Parsing follows the distribution spec's scope grammar: the resource type is
//! everything before the first `:`, the actions everything after the last `:`, and the
//! name whatever lies between, so a name with a `host:port/` prefix survives. Nothing here
//! decides who may do what; it only reads and writes the strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Action;

/// At most this many scopes are taken from one request; the rest are ignored (a token
/// names every granted resource, so this also bounds the token's size).
pub const MAX_SCOPES: usize = 64;

/// Longest resource name accepted (a repository name of 255 bytes plus a host prefix).
pub const MAX_NAME_LEN: usize = 512;

/// Longest single action or resource type accepted.
const MAX_WORD_LEN: usize = 32;

/// The resource type of a repository scope.
pub const REPOSITORY: &str = "repository";
/// The resource type of registry-wide scopes (`registry:catalog:*`).
pub const REGISTRY: &str = "registry";
/// The name of the catalog resource of type [`REGISTRY`].
pub const CATALOG: &str = "catalog";
/// The action that stands for every action.
pub const ALL_ACTIONS: &str = "*";

/// One requested resource scope: `type[(class)]:name:action[,action…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, or a type this service does not know (kept, so a
    /// caller can tell; granting drops it).
    pub resource_type: String,
    /// The deprecated resource class: `plugin` in `repository(plugin)`.
    pub class: Option<String>,
    pub name: String,
    /// The requested actions in the order given, without duplicates or empty entries.
    pub actions: Vec<String>,
}

/// Why a scope string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a scope needs the form type:name:actions")]
    MissingPart,
    #[error("invalid resource type in scope")]
    BadType,
    #[error("invalid resource name in scope")]
    BadName,
    #[error("invalid action in scope")]
    BadAction,
}

impl Scope {
    /// Parses one scope (no spaces: split lists with [`parse_scopes`]).
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let (type_part, rest) = text.split_once(':').ok_or(ScopeError::MissingPart)?;
        let (name, actions) = rest.rsplit_once(':').ok_or(ScopeError::MissingPart)?;
        let (resource_type, class) = parse_type(type_part)?;
        if !valid_name(name) {
            return Err(ScopeError::BadName);
        }
        let mut parsed: Vec<String> = Vec::new();
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            if action.len() > MAX_WORD_LEN
                || !action.bytes().all(|b| b.is_ascii_lowercase() || b == b'*')
            {
                return Err(ScopeError::BadAction);
            }
            if !parsed.iter().any(|a| a == action) {
                parsed.push(action.to_owned());
            }
        }
        Ok(Scope {
            resource_type,
            class,
            name: name.to_owned(),
            actions: parsed,
        })
    }

    /// `repository:NAME:a,b` for the given actions.
    pub fn repository(name: &str, actions: &[Action]) -> Scope {
        Scope {
            resource_type: REPOSITORY.to_owned(),
            class: None,
            name: name.to_owned(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope {
            resource_type: REGISTRY.to_owned(),
            class: None,
            name: CATALOG.to_owned(),
            actions: vec![ALL_ACTIONS.to_owned()],
        }
    }

    /// Drops a leading `host[:port]/` from the name when it is one of `own_hosts` (see
    /// [`strip_host`]).
    pub fn strip_host(&mut self, own_hosts: &[&str]) {
        for host in own_hosts {
            let stripped = strip_host(&self.name, host);
            if stripped.len() != self.name.len() {
                self.name = stripped.to_owned();
                return;
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}:{}", self.name, self.actions.join(","))
    }
}

/// Parses the `scope` values of a token request: each value may hold several scopes
/// separated by spaces (the POST form), and the GET form repeats `scope=`. Scopes that do
/// not parse are skipped, not fatal (a token for what could be understood is still
/// useful); at most [`MAX_SCOPES`] are returned.
pub fn parse_scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    let mut scopes = Vec::new();
    for value in values {
        for item in value.split(' ').filter(|s| !s.is_empty()) {
            if scopes.len() == MAX_SCOPES {
                return scopes;
            }
            if let Ok(scope) = Scope::parse(item) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

/// `name` without its leading `host[:port]/` when that host is `own_host` (compared
/// without regard to case); otherwise `name` unchanged. `registry.example:5000/team/app`
/// with own host `registry.example:5000` gives `team/app`; `team/app` stays as it is.
/// Docker strips its registry's host before asking, so this is for clients that do not;
/// a host without a port is ambiguous (`registry.example/app` may be a repository of that
/// name), so prefer stripping only `host:port` forms.
pub fn strip_host<'a>(name: &'a str, own_host: &str) -> &'a str {
    match name.split_once('/') {
        Some((first, rest)) if !rest.is_empty() && first.eq_ignore_ascii_case(own_host) => rest,
        _ => name,
    }
}

/// One entry of a token's `access` claim: what the token allows on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedAccess {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl GrantedAccess {
    /// The entry as a scope string (`repository:NAME:pull,push`), for the OAuth answer's
    /// `scope` field and for logs.
    pub fn scope_string(&self) -> String {
        format!(
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }

    /// Whether this entry allows `action` (or every action, `*`) on `name` of `kind`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.resource_type == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == ALL_ACTIONS)
    }
}

/// `type` or `type(class)`, each `[a-z0-9]+`.
fn parse_type(text: &str) -> Result<(String, Option<String>), ScopeError> {
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_WORD_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match text.split_once('(') {
        None if word(text) => Ok((text.to_owned(), None)),
        Some((kind, class)) => match class.strip_suffix(')') {
            Some(class) if word(kind) && word(class) => {
                Ok((kind.to_owned(), Some(class.to_owned())))
            }
            _ => Err(ScopeError::BadType),
        },
        None => Err(ScopeError::BadType),
    }
}

/// A resource name: `/`-separated non-empty components of `[A-Za-z0-9._-]`, where only
/// the first component (a host) may carry one `:` (its port). The registry checks
/// repository names strictly; this only keeps junk out of tokens.
fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return false;
    }
    name.split('/').enumerate().all(|(i, component)| {
        let colons = component.bytes().filter(|&b| b == b':').count();
        !component.is_empty()
            && (colons == 0 || (i == 0 && colons == 1 && name.contains('/')))
            && component
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn plain_repository() {
        let s = scope("repository:samalba/my-app:pull,push");
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.class, None);
        assert_eq!(s.name, "samalba/my-app");
        assert_eq!(s.actions, ["pull", "push"]);
        assert_eq!(s.to_string(), "repository:samalba/my-app:pull,push");
    }

    #[test]
    fn host_and_port_prefix() {
        let s = scope("repository:localhost:5000/foo/bar:pull");
        assert_eq!(s.name, "localhost:5000/foo/bar");
        assert_eq!(s.actions, ["pull"]);
        let s = scope("repository:registry.example.com/team/app:push,pull");
        assert_eq!(s.name, "registry.example.com/team/app");
        // A port needs a host component before a `/`.
        assert!(Scope::parse("repository:foo:5000:pull").is_err());
        assert!(Scope::parse("repository:a/b:c/d:pull").is_err());
        assert!(Scope::parse("repository:a:1:2/b:pull").is_err());
    }

    #[test]
    fn strip_own_host() {
        assert_eq!(
            strip_host("localhost:5000/foo/bar", "localhost:5000"),
            "foo/bar"
        );
        assert_eq!(strip_host("LocalHost:5000/foo", "localhost:5000"), "foo");
        assert_eq!(
            strip_host("other:5000/foo", "localhost:5000"),
            "other:5000/foo"
        );
        assert_eq!(
            strip_host("localhost:5000/", "localhost:5000"),
            "localhost:5000/"
        );
        assert_eq!(strip_host("foo/bar", "localhost:5000"), "foo/bar");
        // It compares the first component only; whether to strip at all is the caller's
        // call (a repository may really start with a component spelled like the host).
        assert_eq!(strip_host("team/app", "team"), "app");
        let mut s = scope("repository:reg.example:443/team/app:pull");
        s.strip_host(&["other", "reg.example:443"]);
        assert_eq!(s.name, "team/app");
    }

    #[test]
    fn resource_class_and_catalog() {
        let s = scope("repository(plugin):vieux/sshfs:pull");
        assert_eq!(s.resource_type, "repository");
        assert_eq!(s.class.as_deref(), Some("plugin"));
        assert_eq!(s.to_string(), "repository(plugin):vieux/sshfs:pull");
        let c = scope("registry:catalog:*");
        assert_eq!(c, Scope::catalog());
        assert_eq!(c.to_string(), "registry:catalog:*");
        for bad in [
            "repository(:a:pull",
            "repository():a:pull",
            "repository(x:a:pull",
            "repo(x)y:a:pull",
            "Repository:a:pull",
            ":a:pull",
        ] {
            assert_eq!(Scope::parse(bad), Err(ScopeError::BadType), "{bad}");
        }
    }

    #[test]
    fn actions_are_cleaned() {
        let s = scope("repository:a:pull,,pull,push,");
        assert_eq!(s.actions, ["pull", "push"]);
        assert!(scope("repository:a:").actions.is_empty());
        assert_eq!(
            Scope::parse("repository:a:Pull"),
            Err(ScopeError::BadAction)
        );
        assert_eq!(
            Scope::parse("repository:a:pu ll"),
            Err(ScopeError::BadAction)
        );
        // Unknown but well-formed actions stay; granting drops them.
        assert_eq!(scope("repository:a:frobnicate").actions, ["frobnicate"]);
    }

    #[test]
    fn bad_names() {
        for bad in [
            "repository::pull",
            "repository:/a:pull",
            "repository:a/:pull",
            "repository:a//b:pull",
            "repository:a b:pull",
            "repository:a\"b:pull",
            "repository:a\nb:pull",
            "repository:é:pull",
        ] {
            assert_eq!(Scope::parse(bad), Err(ScopeError::BadName), "{bad:?}");
        }
        let long = format!("repository:{}:pull", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(Scope::parse(&long), Err(ScopeError::BadName));
        for bad in ["", "repository", "repository:a", "pull"] {
            assert_eq!(Scope::parse(bad), Err(ScopeError::MissingPart), "{bad}");
        }
    }

    #[test]
    fn lists_of_scopes() {
        // POST: one value, space-separated; GET: repeated values. Junk is skipped.
        let got = parse_scopes([
            "repository:a:pull repository:b/c:push  registry:catalog:*",
            "nonsense",
            "repository:localhost:5000/d:pull",
        ]);
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b/c", "catalog", "localhost:5000/d"]);
        assert!(parse_scopes([""]).is_empty());
        let many = vec!["repository:a:pull"; MAX_SCOPES + 10].join(" ");
        assert_eq!(parse_scopes([many.as_str()]).len(), MAX_SCOPES);
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator over an alphabet rich in separators.
        let alphabet: Vec<char> = "ab:/,() *.-_5\u{e9}\u{0}\"".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(scope) = Scope::parse(&s) {
                // Whatever parses prints back to something that parses the same.
                assert_eq!(
                    Scope::parse(&scope.to_string()).as_ref(),
                    Ok(&scope),
                    "{s:?}"
                );
            }
            let _ = parse_scopes([s.as_str()]);
            let _ = strip_host(&s, "a:5");
        }
    }

    #[test]
    fn granted_access_json() {
        let g = GrantedAccess {
            resource_type: "repository".into(),
            name: "a/b".into(),
            actions: vec!["pull".into(), "push".into()],
        };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repository","name":"a/b","actions":["pull","push"]}"#
        );
        assert_eq!(serde_json::from_str::<GrantedAccess>(&json).unwrap(), g);
        assert_eq!(g.scope_string(), "repository:a/b:pull,push");
        assert!(g.allows("repository", "a/b", "push"));
        assert!(!g.allows("repository", "a/b", "delete"));
        assert!(!g.allows("repository", "a/bc", "pull"));
        assert!(!g.allows("registry", "a/b", "pull"));
        let star = GrantedAccess {
            actions: vec!["*".into()],
            ..g
        };
        assert!(star.allows("repository", "a/b", "delete"));
        // Missing fields are refused, not defaulted.
        assert!(
            serde_json::from_str::<GrantedAccess>(r#"{"type":"repository","name":"a"}"#).is_err()
        );
    }
}
