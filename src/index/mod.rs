//! The index role (see ARCHITECTURE.md, "Three roles"): accounts, who may do what, and
//! the token service that turns that into short-lived signed tokens. Registries never call
//! the index; they verify its tokens offline with its public key (`auth::bearer`). So far
//! this holds the token service's core: `keys` makes, stores and loads the signing key and
//! the public keys registries trust, and `token` parses token requests, computes grants,
//! signs access tokens and keeps refresh tokens. The HTTP endpoint (`/token`) is wired by
//! the server.

pub mod endpoint;
pub mod keys;
pub mod store;
pub mod token;
