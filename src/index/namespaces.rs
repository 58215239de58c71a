//! Namespaces: the first component of a repository name (`alice/app` is in `alice`). Each
//! user owns the namespace of their own name; organisation namespaces, with their members
//! (users or groups of the users file), come from `[[index.namespaces]]` in the config. A
//! namespace entry may also set the visibility new repositories in it get. A name without
//! `/` (`alpine`) is in no namespace: only the access rules decide there.

use std::collections::HashMap;

use serde::Deserialize;

use crate::auth::Identity;
use crate::index::store::{namespace_of, Visibility};

/// One `[[index.namespaces]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The namespace, e.g. `team` for `team/app`.
    pub name: String,
    /// Users who own it (push, delete, manage its repositories). Empty (and no `groups`):
    /// the user of the same name, as for any user namespace.
    #[serde(default)]
    pub members: Vec<String>,
    /// Groups (from the users file) whose members own it too.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Visibility of repositories first pushed here (default: `[index]
    /// default_visibility`).
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

impl NamespaceConfig {
    fn is_organisation(&self) -> bool {
        !self.members.is_empty() || !self.groups.is_empty()
    }
}

/// Checks an `[[index.namespaces]]` list: names that can be a repository's first path
/// component, no entry twice.
pub fn validate(entries: &[NamespaceConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for ns in entries {
        let valid = !ns.name.is_empty()
            && !ns.name.contains('/')
            && crate::registry::names::RepoName::parse(&ns.name).is_ok();
        if !valid {
            return Err(format!(
                "{:?} is not a namespace (lowercase letters, digits and . _ - separators)",
                ns.name
            ));
        }
        if !seen.insert(ns.name.as_str()) {
            return Err(format!("namespace {:?} is listed twice", ns.name));
        }
        if ns.members.iter().chain(&ns.groups).any(|m| m.is_empty()) {
            return Err(format!("namespace {:?}: empty member name", ns.name));
        }
    }
    Ok(())
}

/// Who owns which namespace, and what visibility new repositories get.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    default_visibility: Visibility,
    entries: HashMap<String, NamespaceConfig>,
}

impl Namespaces {
    pub fn new(default_visibility: Visibility, entries: &[NamespaceConfig]) -> Self {
        Namespaces {
            default_visibility,
            entries: entries
                .iter()
                .map(|e| (e.name.clone(), e.clone()))
                .collect(),
        }
    }

    /// Whether `who` owns `namespace`: its own user namespace, or an organisation it is a
    /// member of (directly or by group). An organisation entry takes the name away from a
    /// user of the same name. Anonymous callers own nothing.
    pub fn owns(&self, who: &Identity, namespace: &str) -> bool {
        let Some(user) = who.user.as_deref().filter(|_| !who.is_anonymous()) else {
            return false;
        };
        if namespace.is_empty() {
            return false;
        }
        match self.entries.get(namespace) {
            Some(org) if org.is_organisation() => {
                org.members.iter().any(|m| m == user)
                    || org.groups.iter().any(|g| who.groups.contains(g))
            }
            _ => user == namespace,
        }
    }

    /// Whether `who` owns the namespace `repository` is in.
    pub fn owns_repository(&self, who: &Identity, repository: &str) -> bool {
        self.owns(who, namespace_of(repository))
    }

    /// The visibility a repository first pushed into `namespace` gets.
    pub fn visibility_for(&self, namespace: &str) -> Visibility {
        self.entries
            .get(namespace)
            .and_then(|e| e.visibility)
            .unwrap_or(self.default_visibility)
    }

    /// The owner recorded for a repository `who` creates: the namespace when `who` owns it
    /// (a user's own name or the organisation), else the creator.
    pub fn owner_for_new(&self, who: &Identity, repository: &str) -> String {
        let ns = namespace_of(repository);
        if self.owns(who, ns) {
            ns.to_owned()
        } else {
            who.display_name().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: Some(name.to_owned()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin: false,
        }
    }

    fn org(name: &str, members: &[&str], groups: &[&str]) -> NamespaceConfig {
        NamespaceConfig {
            name: name.to_owned(),
            members: members.iter().map(|m| m.to_string()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            visibility: None,
        }
    }

    #[test]
    fn users_own_their_namespace_and_organisations_their_members() {
        let mut team = org("team", &["alice"], &["devs"]);
        team.visibility = Some(Visibility::Public);
        let ns = Namespaces::new(Visibility::Private, &[team, org("bob", &["carol"], &[])]);
        let alice = user("alice", &[]);
        let bob = user("bob", &[]);
        let dave = user("dave", &["devs"]);
        assert!(ns.owns_repository(&alice, "alice/app"));
        assert!(!ns.owns_repository(&alice, "bob/app"));
        assert!(ns.owns_repository(&alice, "team/app"));
        assert!(ns.owns_repository(&dave, "team/x/y"));
        assert!(!ns.owns_repository(&bob, "team/app"));
        // An organisation named like a user takes the name away from that user.
        assert!(!ns.owns_repository(&bob, "bob/app"));
        assert!(ns.owns_repository(&user("carol", &[]), "bob/app"));
        // No namespace, anonymous: nobody owns it.
        assert!(!ns.owns_repository(&alice, "alice"));
        assert!(!ns.owns_repository(&Identity::anonymous(), "anonymous/app"));
        assert_eq!(ns.visibility_for("team"), Visibility::Public);
        assert_eq!(ns.visibility_for("alice"), Visibility::Private);
        assert_eq!(ns.owner_for_new(&alice, "team/app"), "team");
        assert_eq!(ns.owner_for_new(&alice, "alice/app"), "alice");
        assert_eq!(ns.owner_for_new(&alice, "library/app"), "alice");
    }

    #[test]
    fn validation() {
        assert!(validate(&[org("team", &["a"], &[])]).is_ok());
        assert!(validate(&[org("Team", &[], &[])]).is_err());
        assert!(validate(&[org("a/b", &[], &[])]).is_err());
        assert!(validate(&[org("", &[], &[])]).is_err());
        assert!(validate(&[org("t", &[], &[]), org("t", &[], &[])]).is_err());
        assert!(validate(&[org("t", &[""], &[])]).is_err());
    }
}
