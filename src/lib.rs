//! holdfast: a hardened, single-tenant container registry appliance. The crate is split by
//! role (see ARCHITECTURE.md): `registry` serves the Distribution API, `storage` keeps the
//! bytes, `index` holds accounts, metadata, tokens, the API and the web UI, `events` carries
//! the registry's pushes and deletes to the index, `client` builds outbound HTTP clients,
//! `auth` checks credentials, `server` owns sockets, TLS and HTTP, `crypto` the one
//! cryptography provider (ring), and `config` the settings file.

pub mod auth;
pub mod client;
pub mod config;
pub mod crypto;
pub mod events;
pub mod index;
pub mod logging;
pub mod registry;
pub mod server;
pub mod storage;
