//! holdfast: a hardened, single-tenant container registry appliance. The crate is split by
//! role (see ARCHITECTURE.md): `registry` serves the Distribution API, `storage` keeps the
//! bytes, `server` owns sockets, TLS and HTTP, and `config` the settings file.

pub mod auth;
pub mod config;
pub mod events;
pub mod index;
pub mod logging;
pub mod registry;
pub mod server;
pub mod storage;
