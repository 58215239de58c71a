//! Access rules: repository globs and the evaluation of `[[access]]` grants. Default deny;
//! rules are additive (the union of the grants of every matching rule); admins may do
//! everything; `allow_delete = false` forbids deletes for everyone, admins included,
//! because it is the operator's switch for an append-only registry.

use std::collections::HashMap;

use super::{AccessRule, Action, Identity};

/// A compiled repository pattern. `*` matches any run of characters except `/`, `**` any
/// run including `/`, and the pattern `*` on its own matches every repository (so that the
/// obvious "everything" rule does what an operator expects; `*/*`-style patterns are
/// still one level each). Other characters match themselves; patterns may only use the
/// characters of repository names (`a-z 0-9 . _ - /`) so a typo such as an upper-case
/// letter is an error instead of a rule that silently never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    everything: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(u8),
    Star,
    DoubleStar,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty repository pattern")]
    Empty,
    #[error("character {0:?} cannot occur in a repository name")]
    BadChar(char),
    #[error("`***` is ambiguous: use `*` (one path level) or `**` (any depth)")]
    TripleStar,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.contains("***") {
            return Err(GlobError::TripleStar);
        }
        if let Some(c) = pattern.chars().find(|c| {
            !(c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-' | '/' | '*'))
        }) {
            return Err(GlobError::BadChar(c));
        }
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                } else {
                    tokens.push(Token::Star);
                    i += 1;
                }
            } else {
                tokens.push(Token::Literal(bytes[i]));
                i += 1;
            }
        }
        Ok(Glob {
            everything: pattern == "*",
            tokens,
        })
    }

    /// Dynamic programming over (pattern token, name position) instead of backtracking,
    /// so a pattern such as `*a*a*a*b` costs O(pattern × name) on any input.
    pub fn matches(&self, name: &str) -> bool {
        if self.everything {
            return true;
        }
        let name = name.as_bytes();
        // reach[j]: the tokens seen so far can match exactly name[..j].
        let mut reach = vec![false; name.len() + 1];
        reach[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; name.len() + 1];
            match token {
                Token::Literal(c) => {
                    for j in 0..name.len() {
                        next[j + 1] = reach[j] && name[j] == *c;
                    }
                }
                Token::Star | Token::DoubleStar => {
                    let crosses_slash = matches!(token, Token::DoubleStar);
                    let mut carry = false;
                    for j in 0..=name.len() {
                        // A star extends a match by one more character, if that
                        // character is allowed for this kind of star.
                        carry =
                            reach[j] || (carry && j > 0 && (crosses_slash || name[j - 1] != b'/'));
                        next[j] = carry;
                    }
                }
            }
            reach = next;
        }
        reach[name.len()]
    }
}

/// A set of actions as bits, so rule evaluation is a few ORs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Grants(u8);

impl Grants {
    fn bit(action: Action) -> u8 {
        match action {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    fn from_actions(actions: &[Action], push_implies_pull: bool) -> Grants {
        let mut bits = 0;
        for &action in actions {
            bits |= Grants::bit(action);
            if action == Action::Push && push_implies_pull {
                bits |= Grants::bit(Action::Pull);
            }
        }
        Grants(bits)
    }

    pub(crate) fn contains(self, action: Action) -> bool {
        self.0 & Grants::bit(action) != 0
    }
}

impl std::ops::BitOrAssign for Grants {
    fn bitor_assign(&mut self, other: Grants) {
        self.0 |= other.0;
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    glob: Glob,
    anonymous: Grants,
    all_authenticated: Grants,
    users: HashMap<String, Grants>,
    groups: HashMap<String, Grants>,
}

impl CompiledRule {
    pub(crate) fn compile(rule: &AccessRule) -> Result<CompiledRule, GlobError> {
        let p = rule.push_implies_pull;
        Ok(CompiledRule {
            glob: Glob::new(&rule.repository)?,
            anonymous: Grants::from_actions(&rule.anonymous, p),
            all_authenticated: Grants::from_actions(&rule.all_authenticated, p),
            users: rule
                .users
                .iter()
                .map(|(name, actions)| (name.clone(), Grants::from_actions(actions, p)))
                .collect(),
            groups: rule
                .groups
                .iter()
                .map(|(name, actions)| (name.clone(), Grants::from_actions(actions, p)))
                .collect(),
        })
    }

    pub(crate) fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub(crate) fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    fn grants_for(&self, identity: &Identity) -> Grants {
        let mut grants = self.anonymous;
        if let Some(user) = &identity.user {
            grants |= self.all_authenticated;
            if let Some(g) = self.users.get(user) {
                grants |= *g;
            }
            for group in &identity.groups {
                if let Some(g) = self.groups.get(group) {
                    grants |= *g;
                }
            }
        }
        grants
    }
}

/// The decision for one request. Groups and user grants only count for a signed-in
/// identity, so a forged anonymous identity with groups gains nothing.
pub(crate) fn allowed(
    rules: &[CompiledRule],
    allow_delete: bool,
    identity: &Identity,
    repository: &str,
    action: Action,
) -> bool {
    if action == Action::Delete && !allow_delete {
        return false;
    }
    if identity.admin && identity.user.is_some() {
        return true;
    }
    let mut grants = Grants::default();
    for rule in rules.iter().filter(|r| r.glob.matches(repository)) {
        grants |= rule.grants_for(identity);
        if grants.contains(action) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn glob_single_star_stops_at_slash() {
        assert!(m("team-a/*", "team-a/app"));
        assert!(!m("team-a/*", "team-a/app/sub"));
        assert!(!m("team-a/*", "team-b/app"));
        assert!(!m("team-a/*", "team-a"));
        assert!(m("*/app", "x/app"));
        assert!(!m("*/app", "x/y/app"));
        assert!(m("team-*/app", "team-xyz/app"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXX/bYYc"));
        assert!(m("lib*", "lib"));
    }

    #[test]
    fn glob_double_star_crosses_slash() {
        assert!(m("a/**", "a/b"));
        assert!(m("a/**", "a/b/c/d"));
        assert!(!m("a/**", "a"));
        assert!(!m("a/**", "ab/c"));
        assert!(m("**/cache", "x/y/cache"));
        assert!(m("**", "any/thing/at/all"));
        assert!(m("a/**/z", "a/b/c/z"));
        assert!(!m("a/**/z", "a/b/c/y"));
    }

    #[test]
    fn glob_lone_star_matches_everything() {
        assert!(m("*", "library/ubuntu"));
        assert!(m("*", "a/b/c"));
        assert!(m("*", "alpine"));
        // But in a longer pattern a star is one level.
        assert!(!m("*/*", "a/b/c"));
    }

    #[test]
    fn glob_literal_and_errors() {
        assert!(m("library/ubuntu", "library/ubuntu"));
        assert!(!m("library/ubuntu", "library/ubuntu2"));
        assert!(!m("library/ubuntu", "library/ubunt"));
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("Team/*"), Err(GlobError::BadChar('T')));
        assert_eq!(Glob::new("a/?"), Err(GlobError::BadChar('?')));
        assert_eq!(Glob::new("a/***"), Err(GlobError::TripleStar));
    }

    #[test]
    fn glob_is_not_exponential() {
        let g = Glob::new("*a*a*a*a*a*a*a*a*a*a*b").unwrap();
        let name = "a".repeat(5000);
        assert!(!g.matches(&name));
    }

    fn rule(repo: &str) -> AccessRule {
        AccessRule::new(repo)
    }

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: Some(name.to_owned()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin: false,
        }
    }

    fn compile(rules: &[AccessRule]) -> Vec<CompiledRule> {
        rules
            .iter()
            .map(|r| CompiledRule::compile(r).unwrap())
            .collect()
    }

    fn example_rules() -> Vec<CompiledRule> {
        let mut public = rule("public/*");
        public.anonymous = vec![Action::Pull];
        let mut team = rule("team-a/*");
        team.groups.insert(
            "team-a".into(),
            vec![Action::Pull, Action::Push, Action::Delete],
        );
        team.users.insert("bob".into(), vec![Action::Pull]);
        let mut everyone = rule("shared/**");
        everyone.all_authenticated = vec![Action::Push];
        let mut dropbox = rule("dropbox/*");
        dropbox.users.insert("ci".into(), vec![Action::Push]);
        dropbox.push_implies_pull = false;
        compile(&[public, team, everyone, dropbox])
    }

    #[test]
    fn default_deny_and_anonymous() {
        let rules = example_rules();
        let anon = Identity::anonymous();
        assert!(allowed(&rules, true, &anon, "public/alpine", Action::Pull));
        assert!(!allowed(&rules, true, &anon, "public/alpine", Action::Push));
        assert!(!allowed(&rules, true, &anon, "public/a/b", Action::Pull));
        assert!(!allowed(&rules, true, &anon, "team-a/app", Action::Pull));
        assert!(!allowed(&rules, true, &anon, "other", Action::Pull));
        assert!(!allowed(&[], true, &user("bob", &[]), "x", Action::Pull));
        // Anonymous grants also apply to signed-in users.
        assert!(allowed(
            &rules,
            true,
            &user("zed", &[]),
            "public/alpine",
            Action::Pull
        ));
    }

    #[test]
    fn users_groups_and_union() {
        let rules = example_rules();
        let bob = user("bob", &[]);
        assert!(allowed(&rules, true, &bob, "team-a/app", Action::Pull));
        assert!(!allowed(&rules, true, &bob, "team-a/app", Action::Push));
        let alice = user("alice", &["team-a"]);
        for action in Action::ALL {
            assert!(allowed(&rules, true, &alice, "team-a/app", action));
        }
        assert!(!allowed(&rules, true, &alice, "team-b/app", Action::Pull));
        // Bob in group team-a: union of his user grant and the group grant.
        let bob_in_team = user("bob", &["team-a"]);
        assert!(allowed(
            &rules,
            true,
            &bob_in_team,
            "team-a/app",
            Action::Push
        ));
        // all_authenticated: any signed-in user, never anonymous.
        assert!(allowed(&rules, true, &bob, "shared/x/y", Action::Push));
        assert!(allowed(&rules, true, &bob, "shared/x/y", Action::Pull));
        assert!(!allowed(
            &rules,
            true,
            &Identity::anonymous(),
            "shared/x",
            Action::Pull
        ));
        // Groups without a user name are ignored.
        let forged = Identity {
            user: None,
            groups: vec!["team-a".into()],
            admin: true,
        };
        assert!(!allowed(&rules, true, &forged, "team-a/app", Action::Pull));
    }

    #[test]
    fn push_implies_pull_unless_disabled() {
        let rules = example_rules();
        let ci = user("ci", &[]);
        assert!(allowed(&rules, true, &ci, "dropbox/in", Action::Push));
        assert!(!allowed(&rules, true, &ci, "dropbox/in", Action::Pull));
        let mut r = rule("p/*");
        r.users.insert("ci".into(), vec![Action::Push]);
        let rules = compile(&[r]);
        assert!(allowed(&rules, true, &ci, "p/x", Action::Pull));
        assert!(!allowed(&rules, true, &ci, "p/x", Action::Delete));
    }

    #[test]
    fn admin_and_allow_delete() {
        let rules = example_rules();
        let admin = Identity {
            user: Some("root".into()),
            groups: vec![],
            admin: true,
        };
        for action in Action::ALL {
            assert!(allowed(&rules, true, &admin, "anything/at/all", action));
            assert!(allowed(&[], true, &admin, "x", action));
        }
        assert!(!allowed(&rules, false, &admin, "x", Action::Delete));
        assert!(allowed(&rules, false, &admin, "x", Action::Push));
        let alice = user("alice", &["team-a"]);
        assert!(allowed(&rules, true, &alice, "team-a/app", Action::Delete));
        assert!(!allowed(
            &rules,
            false,
            &alice,
            "team-a/app",
            Action::Delete
        ));
        assert!(allowed(&rules, false, &alice, "team-a/app", Action::Push));
    }
}
