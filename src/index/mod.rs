//! The index role (see ARCHITECTURE.md, "Three roles"): accounts, who may do what, and
//! the token service that turns that into short-lived signed tokens. Registries never call
//! the index for decisions; they verify its tokens offline with its public key
//! (`auth::bearer`) and report committed pushes and deletes to it as events. `keys` holds
//! the signing key, `token` the token service's core and `endpoint` its HTTP side; `store`
//! is the metadata database (repositories, tags and checksums, collaborators, refresh
//! tokens); `namespaces` and `policy` decide who may do what; `ingest` applies registry
//! events; `api` is the JSON API under `/api/v1/` and `/v1/search`, `api_community` its
//! stars and comments; `web` the web UI at `/`; `manage` holds what repository managers do
//! and `community` the rules of stars and comments, both shared by the API and the UI.
//! `webhooks` announces pushes and deletes to configured URLs (its outbox is in `store`,
//! its API in `api_webhooks`).

pub mod api;
pub mod api_community;
pub mod api_webhooks;
pub mod community;
pub mod endpoint;
pub mod ingest;
pub mod keys;
pub mod manage;
pub mod namespaces;
pub mod policy;
pub mod store;
pub mod token;
pub mod web;
pub mod webhooks;
