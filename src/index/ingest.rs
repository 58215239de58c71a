//! Registry events into the index's records: after every committed manifest push or
//! delete a registry reports it (in-process when the index is embedded, over HTTPS to a
//! custom index), and this applies it to the store exactly once (events carry ids; a
//! retried delivery changes nothing). This is how the index holds the checksum, media type
//! and size of every image. With webhooks enabled, applying an event also queues its
//! webhook deliveries (in the same transaction) and wakes the worker that sends them.

use std::sync::Arc;

use crate::auth::Identity;
use crate::events::{Event, EventError, EventKind, EventSink};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::store::{DeleteNotice, DeleteRef, PushRecord, StoreError};

/// Applies one event; `Ok(false)` when it had been applied before.
pub fn apply(index: &EmbeddedIndex, event: &Event) -> Result<bool, StoreError> {
    let applied = apply_event(index, event)?;
    if applied {
        if let Some(hooks) = &index.webhooks {
            hooks.wake();
        }
    }
    Ok(applied)
}

fn apply_event(index: &EmbeddedIndex, event: &Event) -> Result<bool, StoreError> {
    let store = &index.store;
    let fanout = index.webhooks.as_ref().map(|w| w.fanout());
    let notice = fanout.as_deref().map(|fanout| DeleteNotice {
        actor: event.actor.as_deref(),
        at: event.at,
        fanout,
    });
    match &event.kind {
        EventKind::ManifestPushed {
            repository,
            tag,
            digest,
            media_type,
            size,
        } => {
            // Normally the repository was created when its first push was granted; a push
            // the rules allowed before the index knew it creates it here.
            let actor = event
                .actor
                .as_deref()
                .and_then(|a| index.auth.state().identity_of(a))
                .unwrap_or_else(Identity::anonymous);
            let namespace = crate::index::store::namespace_of(repository);
            store.apply_push(&PushRecord {
                event_id: event.id.clone(),
                repository: repository.clone(),
                tag: tag.clone(),
                digest: digest.clone(),
                media_type: media_type.clone(),
                size: *size,
                pusher: event.actor.clone(),
                at: event.at,
                default_owner: index.namespaces.owner_for_new(&actor, repository),
                default_visibility: index.namespaces.visibility_for(namespace),
                webhooks: fanout.clone(),
            })
        }
        EventKind::TagDeleted { repository, tag } => store.apply_delete_notifying(
            &event.id,
            repository,
            &DeleteRef::Tag(tag.clone()),
            notice.as_ref(),
        ),
        EventKind::ManifestDeleted { repository, digest } => store.apply_delete_notifying(
            &event.id,
            repository,
            &DeleteRef::Manifest(digest.clone()),
            notice.as_ref(),
        ),
        EventKind::RepositoryDeleted { repository } => {
            let applied = store.apply_repository_deleted(&event.id, repository)?;
            // The registry confirms a deletion the index asked of it.
            store.pending_deletion_done(repository, &event.service)?;
            Ok(applied)
        }
    }
}

/// The in-process path: the embedded registry's events go straight into the store.
pub struct LocalSink {
    pub index: Arc<EmbeddedIndex>,
}

impl EventSink for LocalSink {
    fn publish<'a>(
        &'a self,
        event: Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), EventError>> + Send + 'a>>
    {
        let index = self.index.clone();
        Box::pin(async move {
            let id = event.id.clone();
            let result = tokio::task::spawn_blocking(move || apply(&index, &event)).await;
            match result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    tracing::error!(event = %id, error = %e, "recording a registry event in the index failed");
                    Err(EventError::Task(e.to_string()))
                }
                Err(e) => Err(EventError::Task(e.to_string())),
            }
        })
    }
}
