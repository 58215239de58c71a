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
