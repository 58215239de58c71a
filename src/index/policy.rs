//! The index's access decision: what a caller may do in a repository, combining the
//! config's access rules (`[[access]]`, admins) with what the index knows: namespace
//! ownership, repository visibility and collaborators. Tokens are granted by it, the
//! embedded registry's catalog is filtered by it, and the index API and search show only
//! what it lets the caller pull.
//!
//! - rules (and admins) grant what they grant, as in Basic mode;
//! - the owner of a repository's namespace may pull, push and delete (deletes only while
//!   `[auth] allow_delete` is on) and manage it (visibility, description, collaborators,
//!   deleting the whole repository);
//! - a public repository may be pulled by anyone, anonymous callers included;
//! - a collaborator may pull, or pull and push, that one repository.

use crate::auth::AuthState;
use crate::auth::{Action, Identity};
use crate::index::namespaces::Namespaces;
use crate::index::store::{CollaboratorAccess, Repository, Store, StoreError, Visibility};

/// One decision's inputs: today's rules, the store and the namespaces.
pub struct Policy<'a> {
    pub rules: &'a AuthState,
    pub store: &'a Store,
    pub namespaces: &'a Namespaces,
}

impl Policy<'_> {
    /// May `who` do `action` in `repository`?
    pub fn may(
        &self,
        who: &Identity,
        repository: &str,
        action: Action,
    ) -> Result<bool, StoreError> {
        if self.rules.allowed(who, repository, action) {
            return Ok(true);
        }
        let owner = self.namespaces.owns_repository(who, repository);
        Ok(match action {
            Action::Delete => owner && self.rules.deletes_allowed(),
            Action::Push => {
                owner || self.collaboration(who, repository)? == Some(CollaboratorAccess::Push)
            }
            Action::Pull => {
                if owner {
                    true
                } else {
                    match self.store.repository(repository)? {
                        Some(repo) => self.may_pull_existing(who, &repo)?,
                        None => false,
                    }
                }
            }
        })
    }

    /// May `who` pull `repo` (already loaded)? The same decision as [`may`](Self::may)
    /// with `Action::Pull`, one lookup fewer: used to filter listings.
    pub fn may_pull_existing(&self, who: &Identity, repo: &Repository) -> Result<bool, StoreError> {
        if repo.visibility == Visibility::Public
            || self.namespaces.owns_repository(who, &repo.name)
            || self.rules.allowed(who, &repo.name, Action::Pull)
        {
            return Ok(true);
        }
        Ok(self.collaboration(who, &repo.name)?.is_some())
    }

    /// May `who` manage `repository` (visibility, description, collaborators, delete it)?
    /// Its namespace's owners and admins may.
    pub fn may_manage(&self, who: &Identity, repository: &str) -> bool {
        (who.admin && !who.is_anonymous()) || self.namespaces.owns_repository(who, repository)
    }

    fn collaboration(
        &self,
        who: &Identity,
        repository: &str,
    ) -> Result<Option<CollaboratorAccess>, StoreError> {
        match who.user.as_deref().filter(|_| !who.is_anonymous()) {
            Some(user) => self.store.collaboration(repository, user),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AccessRule, AuthSettings};
    use crate::index::namespaces::NamespaceConfig;

    fn who(name: &str, admin: bool) -> Identity {
        Identity {
            user: Some(name.to_owned()),
            groups: Vec::new(),
            admin,
        }
    }

    fn rules(allow_delete: bool) -> AuthState {
        let mut rule = AccessRule::new("shared/**");
        rule.users.insert("bob".into(), vec![Action::Pull]);
        let settings = AuthSettings {
            allow_delete,
            ..AuthSettings::default()
        };
        AuthState::load(&settings, &[rule]).unwrap()
    }

    #[test]
    fn rules_ownership_visibility_and_collaborators_add_up() {
        let store = Store::open_in_memory().unwrap();
        let namespaces = Namespaces::new(
            Visibility::Private,
            &[NamespaceConfig {
                name: "team".into(),
                members: vec!["carol".into()],
                groups: vec![],
                visibility: None,
            }],
        );
        let state = rules(true);
        let policy = Policy {
            rules: &state,
            store: &store,
            namespaces: &namespaces,
        };
        let (alice, bob, carol, dave) = (
            who("alice", false),
            who("bob", false),
            who("carol", false),
            who("dave", false),
        );
        let anon = Identity::anonymous();
        let may = |w: &Identity, r: &str, a: Action| policy.may(w, r, a).unwrap();

        // Owners: everything in their namespace, also before it exists.
        for a in Action::ALL {
            assert!(may(&alice, "alice/app", a));
            assert!(may(&carol, "team/x", a));
            assert!(!may(&bob, "alice/app", a));
            assert!(!may(&anon, "alice/app", a));
        }
        assert!(policy.may_manage(&alice, "alice/app"));
        assert!(!policy.may_manage(&bob, "alice/app"));
        assert!(policy.may_manage(&who("root", true), "alice/app"));
        assert!(!policy.may_manage(&anon, "anything/x"));

        // Rules still grant what they grant.
        assert!(may(&bob, "shared/thing", Action::Pull));
        assert!(!may(&bob, "shared/thing", Action::Push));

        // A private repository: collaborators only.
        store
            .create_repository("alice/app", "alice", Visibility::Private, 1)
            .unwrap();
        let repo = store.repository("alice/app").unwrap().unwrap();
        assert!(!policy.may_pull_existing(&bob, &repo).unwrap());
        store
            .set_collaborator("alice/app", "bob", CollaboratorAccess::Pull, 2)
            .unwrap();
        assert!(may(&bob, "alice/app", Action::Pull));
        assert!(!may(&bob, "alice/app", Action::Push));
        assert!(!may(&bob, "alice/app", Action::Delete));
        assert!(policy.may_pull_existing(&bob, &repo).unwrap());
        store
            .set_collaborator("alice/app", "bob", CollaboratorAccess::Push, 3)
            .unwrap();
        assert!(may(&bob, "alice/app", Action::Push));
        assert!(!may(&bob, "alice/app", Action::Delete));
        assert!(!policy.may_manage(&bob, "alice/app"));
        assert!(!may(&dave, "alice/app", Action::Pull));

        // Public: anyone pulls, nobody else pushes.
        store
            .set_visibility("alice/app", Visibility::Public)
            .unwrap();
        assert!(may(&anon, "alice/app", Action::Pull));
        assert!(may(&dave, "alice/app", Action::Pull));
        assert!(!may(&dave, "alice/app", Action::Push));
        assert!(!may(&anon, "alice/app", Action::Push));
    }

    #[test]
    fn deletes_follow_allow_delete() {
        let store = Store::open_in_memory().unwrap();
        let namespaces = Namespaces::default();
        let state = rules(false);
        let policy = Policy {
            rules: &state,
            store: &store,
            namespaces: &namespaces,
        };
        let alice = who("alice", false);
        assert!(policy.may(&alice, "alice/app", Action::Push).unwrap());
        assert!(!policy.may(&alice, "alice/app", Action::Delete).unwrap());
    }
}
