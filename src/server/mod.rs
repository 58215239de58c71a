//! The server: everything between the socket and the registry. It opens storage, prepares
//! TLS (generating a local CA on first run when no certificate is configured), binds the
//! listeners, runs background upkeep (expired upload sessions), and shuts down gracefully on
//! SIGTERM/SIGINT.

pub mod access;
pub mod certgen;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod systemd;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::{watch_files, AuthMode, AuthState, Authenticator, WatchGuard};
use crate::config::Config;
use crate::index::endpoint::LocalFuture;
use crate::registry::names::{Digest, RepoName, Tag};
use crate::registry::Registry;
use crate::server::access::Gate;
use crate::storage::{FsStorage, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening storage at {path}: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    CertGen(#[from] certgen::CertGenError),
    #[error(transparent)]
    AuthLoad(#[from] crate::auth::AuthLoadError),
    #[error(transparent)]
    UsersFile(#[from] crate::auth::UsersFileError),
    #[error("token keys: {0}")]
    Keys(#[from] crate::index::keys::KeyError),
    #[error("watching the config and users files: {0}")]
    Watch(#[from] notify::Error),
    #[error("sockets passed by systemd: {0}")]
    Inherited(std::io::Error),
    #[error("index: {0}")]
    Index(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The index's database, under `<storage.path>/index/`.
pub const INDEX_DATABASE: &str = "index.db";

/// The registry in this process as the embedded index sees it: whole-repository deletes
/// go straight to its storage, and the web UI reads manifests and configs and deletes
/// tags there. A repository's content is only read when the repository links it, as the
/// registry API would serve it.
struct LocalRegistryStorage {
    storage: FsStorage,
    service: String,
    /// `[storage] read_only`: tag deletes are refused as the registry refuses them.
    read_only: bool,
}

impl crate::index::endpoint::LocalRegistry for LocalRegistryStorage {
    fn service(&self) -> &str {
        &self.service
    }

    fn delete_repository<'a>(&'a self, name: &'a str) -> LocalFuture<'a, bool> {
        Box::pin(delete_local_repository(&self.storage, name))
    }

    fn manifest<'a>(&'a self, name: &'a str, digest: &'a str) -> LocalFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let (Ok(repo), Ok(digest)) = (RepoName::parse(name), Digest::parse(digest)) else {
                return Ok(None);
            };
            if !self
                .storage
                .manifest_linked(&repo, &digest)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(None);
            }
            match self.storage.blob_read_all(&digest).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(StorageError::NotFound) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn blob<'a>(
        &'a self,
        name: &'a str,
        digest: &'a str,
        max_len: u64,
    ) -> LocalFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let (Ok(repo), Ok(digest)) = (RepoName::parse(name), Digest::parse(digest)) else {
                return Ok(None);
            };
            if !self
                .storage
                .blob_linked(&repo, &digest)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(None);
            }
            match self.storage.blob_size(&digest).await {
                Ok(Some(size)) if size <= max_len => {}
                Ok(_) | Err(StorageError::NotFound) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
            match self.storage.blob_read_all(&digest).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(StorageError::NotFound) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn delete_tag<'a>(&'a self, name: &'a str, tag: &'a str) -> LocalFuture<'a, bool> {
        Box::pin(async move {
            if self.read_only {
                return Err("the registry is in read-only maintenance mode".to_owned());
            }
            let repo = RepoName::parse(name).map_err(|e| e.to_string())?;
            let tag = Tag::parse(tag).map_err(|e| e.to_string())?;
            match self.storage.tag_delete(&repo, &tag).await {
                Ok(()) => Ok(true),
                Err(StorageError::NotFound) => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Removes a repository's tags, manifests and links from `storage`.
async fn delete_local_repository(storage: &FsStorage, name: &str) -> Result<bool, String> {
    let repo = crate::registry::names::RepoName::parse(name).map_err(|e| e.to_string())?;
    let deleted = storage
        .delete_repository(&repo)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(target: "audit", event = "repository_content_deleted", repository = %name, existed = deleted);
    Ok(deleted)
}

/// What a registry reporting to a custom index does when the index asks it to delete a
/// repository: remove the content, then report that it did (which ends the request).
fn deletion_handler(
    storage: FsStorage,
    outbox: Arc<crate::events::Outbox>,
    service: String,
) -> crate::events::sender::DeletionHandler {
    use crate::events::{Event, EventKind, EventSink};
    Arc::new(move |name: String| {
        let (storage, outbox, service) = (storage.clone(), outbox.clone(), service.clone());
        Box::pin(async move {
            if let Err(e) = delete_local_repository(&storage, &name).await {
                tracing::error!(repository = %name, error = %e, "deleting a repository the index asked for failed");
                return;
            }
            let kind = EventKind::RepositoryDeleted { repository: name };
            match Event::new(&service, None, kind) {
                Ok(event) => {
                    if let Err(e) = outbox.publish(event).await {
                        tracing::error!(error = %e, "reporting a repository deletion failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "making an event failed"),
            }
        })
    })
}

/// Loads the configured certificate, or the generated one (making it on first run).
fn prepare_tls(config: &Config) -> Result<Option<(TlsAcceptor, Arc<tls::CertStore>)>, ServerError> {
    if !config.tls.enabled {
        tracing::warn!(
            "TLS is disabled in the config: serving plain HTTP. Do this only behind a \
             TLS-terminating proxy on a trusted network."
        );
        return Ok(None);
    }
    let (cert, key) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = config.generated_tls_dir();
            let gen = certgen::Generated::in_dir(&dir);
            if !gen.exists() {
                let names = certgen::default_names(&config.tls.generated_names);
                certgen::generate(&dir, &names)?;
                tracing::info!(names = ?names, "generated a local CA and server certificate");
                let host = config
                    .listen_addrs()
                    .first()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                // The one line a user needs, on stdout so it is seen even with logs filtered.
                println!(
                    "holdfast: trust the new local CA {ca} (docker: copy it to /etc/docker/certs.d/{host}/ca.crt; skopeo/podman: --cert-dir {dir})",
                    ca = gen.ca_cert.display(),
                    dir = dir.display(),
                );
            }
            (gen.cert, gen.key)
        }
    };
    let store = tls::CertStore::load(&cert, &key)?;
    let client_ca = config
        .tls
        .client_ca
        .as_deref()
        .map(|p| (p, config.tls.client_auth));
    let server_config = tls::server_config(store.clone(), client_ca)?;
    Ok(Some((TlsAcceptor::from(server_config), store)))
}

/// Swaps in a changed certificate/key pair; a bad pair is refused and the old one serves on.
fn reload_certificate(store: &tls::CertStore) {
    match store.reload() {
        Ok(()) => tracing::info!("reloaded the TLS certificate"),
        Err(e) => {
            tracing::error!(error = %e, "new TLS certificate refused; the previous one keeps serving")
        }
    }
}

/// The listening sockets: those systemd passed (socket activation) plus the configured
/// `listen` addresses not already among them.
fn bind_listeners(config: &Config) -> Result<Vec<std::net::TcpListener>, ServerError> {
    let mut listeners = systemd::inherited_listeners().map_err(ServerError::Inherited)?;
    let inherited: Vec<_> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for addr in config.listen_addrs() {
        if inherited.contains(&addr) {
            continue;
        }
        let l = std::net::TcpListener::bind(addr)
            .map_err(|source| ServerError::Bind { addr, source })?;
        l.set_nonblocking(true)
            .map_err(|source| ServerError::Bind { addr, source })?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Builds the authentication gate: with `[auth] mode = "basic"`, loads users and rules
/// (creating the initial admin on first run), and reloads them whenever the config, users
/// or htpasswd files change or SIGHUP arrives. The returned guard keeps the file watcher.
type Reloader = Arc<dyn Fn() + Send + Sync>;

/// Called after each successful reload of users and rules, with the old and new state.
type ReloadHook = Arc<dyn Fn(&AuthState, &AuthState) + Send + Sync>;
type ReloadHookSlot = Arc<std::sync::OnceLock<ReloadHook>>;

fn prepare_auth(
    config: &Config,
    local_storage: Option<FsStorage>,
) -> Result<(Gate, Option<WatchGuard>, Option<Reloader>), ServerError> {
    if config.auth.mode == AuthMode::None {
        tracing::warn!("authentication is off ([auth] mode = \"none\"): anyone who can connect may pull, push and delete");
        return Ok((
            Gate::Open {
                deletes_enabled: config.auth.allow_delete,
            },
            None,
            None,
        ));
    }
    if config.auth.mode == AuthMode::Token {
        return prepare_token_auth(config, local_storage);
    }
    let (auth, guard, reloader, _) = build_authenticator(config)?;
    Ok((Gate::Basic(auth), Some(guard), Some(reloader)))
}

/// Token mode: a verifier trusting the configured index keys, and with `[index] enabled`
/// the embedded token service (its signing key made on first run) and its users.
fn prepare_token_auth(
    config: &Config,
    local_storage: Option<FsStorage>,
) -> Result<(Gate, Option<WatchGuard>, Option<Reloader>), ServerError> {
    use crate::index::endpoint::EmbeddedIndex;
    use crate::index::keys;
    use crate::index::token::{RefreshTokens, TokenIssuer};

    let mut trusted = keys::load_public_keys(&config.token.trusted_keys)?;
    let listen = config.listen_addrs();
    let scheme = if config.tls.enabled { "https" } else { "http" };
    let realm = config.token.realm.clone().unwrap_or_else(|| {
        let host = listen
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_owned());
        format!("{scheme}://{host}/token")
    });
    let (index, guard, reloader) = if config.index.enabled {
        let (auth, guard, reloader, hook) = build_authenticator(config)?;
        let key = keys::load_or_generate(
            &config.storage.path.join("index"),
            config.index.key_algorithm,
        )?;
        tracing::info!(kid = key.kid(), "token signing key loaded");
        trusted.push(key.public_key().clone());
        let own_public_key = key.public_key().clone();
        let issuer = TokenIssuer::new(key, config.token.issuer.clone())
            .with_lifetime(Duration::from_secs(config.token.lifetime_secs));
        // The names clients may prefix repositories with in scopes.
        let mut own_hosts = Vec::new();
        for addr in &listen {
            own_hosts.push(addr.to_string());
            own_hosts.push(format!("localhost:{}", addr.port()));
            for name in &config.tls.generated_names {
                own_hosts.push(format!("{name}:{}", addr.port()));
            }
        }
        let db = config.storage.path.join("index").join(INDEX_DATABASE);
        let store = Arc::new(
            crate::index::store::Store::open(&db)
                .map_err(|e| ServerError::Index(format!("{}: {e}", db.display())))?,
        );
        let event_secret = match &config.index.event_secret_file {
            Some(path) => {
                Some(crate::index::endpoint::EventSecret::load(path).map_err(ServerError::Index)?)
            }
            None => None,
        };
        let local_registry = local_storage.map(|storage| {
            Arc::new(LocalRegistryStorage {
                storage,
                service: config.token.service.clone(),
                read_only: config.storage.read_only,
            }) as Arc<dyn crate::index::endpoint::LocalRegistry>
        });
        let api_verifier = crate::auth::bearer::TokenVerifier::new(
            config.token.issuer.clone(),
            config.token.service.clone(),
            [own_public_key],
        );
        let public_host = config.index.public_host.clone().unwrap_or_else(|| {
            // The realm's authority (clients reach the registry there too when embedded).
            realm
                .split_once("://")
                .and_then(|(_, rest)| rest.split('/').next())
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    listen
                        .first()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_owned())
                })
        });
        let webhooks =
            crate::index::webhooks::Webhooks::from_config(&config.index.webhooks, &public_host)
                .map_err(|e| ServerError::Index(format!("webhooks: {e}")))?;
        let index = EmbeddedIndex {
            auth,
            issuer,
            services: std::iter::once(config.token.service.clone())
                .chain(config.index.services.iter().cloned())
                .collect(),
            own_hosts,
            refresh: RefreshTokens::new(store.clone()),
            store,
            namespaces: crate::index::namespaces::Namespaces::new(
                config.index.default_visibility,
                &config.index.namespaces,
            ),
            local_registry,
            event_secret,
            api_verifier,
            public_host,
            webhooks,
            web_sessions: crate::index::web::session::Sessions::new(),
        };
        let index = Arc::new(index);
        // A password change or removal ends the user's refresh tokens and web sessions.
        let weak = Arc::downgrade(&index);
        let _ = hook.set(Arc::new(move |before: &AuthState, after: &AuthState| {
            let Some(index) = weak.upgrade() else { return };
            for user in before.user_names() {
                if !before.same_credentials(after, &user) {
                    if let Ok(n) = index.refresh.revoke_user(&user) {
                        if n > 0 {
                            tracing::info!(target: "audit", event = "refresh_tokens_revoked", user = %user, count = n);
                        }
                    }
                    let n = index.web_sessions.revoke_user(&user);
                    if n > 0 {
                        tracing::info!(target: "audit", event = "web_sessions_ended", user = %user, count = n);
                    }
                }
            }
        }));
        (Some(index), Some(guard), Some(reloader))
    } else {
        (None, None, None)
    };
    tracing::info!(realm = %realm, service = %config.token.service, keys = trusted.len(), embedded_index = index.is_some(), "token authentication");
    let verifier = crate::auth::bearer::TokenVerifier::new(
        config.token.issuer.clone(),
        config.token.service.clone(),
        trusted,
    );
    let gate = crate::server::access::TokenGate {
        verifier,
        realm,
        service: config.token.service.clone(),
        index,
    };
    Ok((Gate::Token(Arc::new(gate)), guard, reloader))
}

/// Loads users and rules (creating the initial admin on first run) and reloads them
/// whenever the config, users or htpasswd files change.
fn build_authenticator(
    config: &Config,
) -> Result<(Arc<Authenticator>, WatchGuard, Reloader, ReloadHookSlot), ServerError> {
    let mut state = AuthState::load(&config.auth, &config.access)?;
    if state.user_count() == 0 {
        let users_file = config.auth.users_file_or_default(&config.storage.path);
        if let Some(password) =
            crate::auth::ensure_initial_admin(&users_file, &config.storage.path)?
        {
            let saved = config
                .storage
                .path
                .join(crate::auth::INITIAL_ADMIN_PASSWORD_FILE);
            if std::env::var_os("JOURNAL_STREAM").is_some() {
                // Under systemd, stdout is the journal, which more people can read than
                // the 0600 file: point there instead of printing the password.
                println!(
                    "holdfast: created user `admin`; its password is in {} (change it with `holdfast user passwd admin`)",
                    saved.display()
                );
            } else {
                // Printed once, on stdout only (never into the logs); also kept 0600 on disk.
                println!(
                    "holdfast: created user `admin` with password {password} (also in {}; change it with `holdfast user passwd admin`)",
                    saved.display()
                );
            }
            tracing::info!(users_file = %users_file.display(), "created the initial admin user");
            state = AuthState::load(&config.auth, &config.access)?;
        }
    }
    let auth = Arc::new(Authenticator::new(state, &config.auth));

    let mut watched = config.auth.watched_files();
    if let Some(path) = &config.source {
        watched.push(path.clone());
    }
    let hook: ReloadHookSlot = Arc::new(std::sync::OnceLock::new());
    let reloader = {
        let auth = auth.clone();
        let source = config.source.clone();
        let hook = hook.clone();
        move || reload_auth(source.as_deref(), &auth, &hook)
    };
    let guard = watch_files(watched, reloader.clone())?;
    Ok((auth, guard, Arc::new(reloader), hook))
}

/// Re-reads the config and users files and swaps in the new users and rules. A file that
/// does not load keeps the last good state serving, and the error (with its line) is
/// logged.
fn reload_auth(config_path: Option<&std::path::Path>, auth: &Authenticator, hook: &ReloadHookSlot) {
    let config = match Config::load_resolved(config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; keeping the last good users and rules");
            return;
        }
    };
    match AuthState::load(&config.auth, &config.access) {
        Ok(state) => {
            let users = state.user_count();
            let before = auth.state();
            auth.reload(state);
            if let Some(hook) = hook.get() {
                hook(&before, &auth.state());
            }
            tracing::info!(
                users,
                rules = config.access.len(),
                "reloaded users and access rules"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "users or rules failed to load; keeping the last good ones")
        }
    }
}

/// Runs a custom index (`holdfast index`): the token service alone, for registries that
/// trust its public key (`<storage.path>/index/token-signing.pub.pem`). Users, rules and
/// the signing key are this process's; `[token] service` and `[index] services` name the
/// registries it issues tokens for.
pub async fn run_index(mut config: Config) -> Result<(), ServerError> {
    config.auth.mode = AuthMode::Token;
    config.index.enabled = true;
    serve(config, false).await
}

/// Runs the registry (with the embedded index when configured) until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    serve(config, true).await
}

async fn serve(config: Config, registry_api: bool) -> Result<(), ServerError> {
    let storage = FsStorage::open(&config.storage.path).map_err(|source| ServerError::Storage {
        path: config.storage.path.clone(),
        source,
    })?;
    let tls = prepare_tls(&config)?;
    let (gate, auth_watch, reload_auth) =
        prepare_auth(&config, registry_api.then(|| storage.clone()))?;
    let mut registry = Registry::new(storage.clone(), config.limits.clone());
    registry.read_only = config.storage.read_only;
    registry.min_free_bytes = config.storage.min_free_bytes;
    registry.service = config.token.service.clone();
    let mut outbox_sender = None;
    if let Some(index) = gate.index() {
        // The embedded index records this registry's pushes and deletes in-process.
        registry.events = Some(Arc::new(crate::index::ingest::LocalSink {
            index: index.clone(),
        }));
    } else if config.events.enabled() && registry_api {
        let outbox = Arc::new(
            crate::events::Outbox::open(config.storage.path.join("outbox"))
                .map_err(|e| ServerError::Index(format!("event outbox: {e}")))?,
        );
        let sender = crate::events::EventSender::new(outbox.clone(), &config.events)
            .and_then(|s| {
                s.with_check_in(
                    &config.token.service,
                    config.events.poll(),
                    deletion_handler(
                        storage.clone(),
                        outbox.clone(),
                        config.token.service.clone(),
                    ),
                )
            })
            .map_err(|e| ServerError::Index(format!("event sender: {e}")))?;
        tracing::info!(index = ?config.events.index_url, "reporting pushes and deletes to the index");
        outbox_sender = Some(sender);
        registry.events = Some(outbox);
    }
    if registry.read_only {
        tracing::warn!("read-only maintenance mode: pushes and deletes are refused");
    }
    let ctx = Arc::new(http::Context {
        registry: Arc::new(registry),
        gate,
        metrics: Arc::new(metrics::Metrics::new()),
        storage_root: config.storage.path.clone(),
        registry_api,
    });
    let service = warp::service(http::routes(ctx.clone()));

    // Certificates reload when their files change, and on SIGHUP with everything else.
    let mut watches: Vec<WatchGuard> = auth_watch.into_iter().collect();
    let cert_store = tls.as_ref().map(|(_, store)| store.clone());
    if let Some(store) = &cert_store {
        let s = store.clone();
        watches.push(watch_files(store.files(), move || reload_certificate(&s))?);
    }
    spawn_sighup_handler(cert_store.clone(), reload_auth);

    let serving = Arc::new(listener::Serving::new(
        &config.server,
        config.allowed_networks(),
    ));
    let graceful = Arc::new(GracefulShutdown::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let event_task = match outbox_sender {
        Some(sender) => Some(
            sender
                .spawn(shutdown_rx.clone())
                .map_err(|e| ServerError::Index(format!("event sender: {e}")))?,
        ),
        None => None,
    };
    // Webhooks go out from the index's outbox; without an index there is nothing to send.
    let webhook_task = match ctx.gate.index() {
        Some(index) => index.webhooks.as_ref().map(|hooks| {
            crate::index::webhooks::worker::spawn(
                index.store.clone(),
                hooks.clone(),
                shutdown_rx.clone(),
            )
        }),
        None => {
            if config.index.webhooks.enabled {
                tracing::warn!("[index.webhooks] enabled, but this process runs no index ([index] enabled = false): no webhooks are sent");
            }
            None
        }
    };

    let acceptor = tls.map(|(acceptor, _)| acceptor);
    let mut accept_tasks = Vec::new();
    let mut addresses = Vec::new();
    for std_listener in bind_listeners(&config)? {
        let local = std_listener.local_addr().map_err(ServerError::Inherited)?;
        let l = TcpListener::from_std(std_listener).map_err(|source| ServerError::Bind {
            addr: local,
            source,
        })?;
        tracing::info!(addr = %local, tls = acceptor.is_some(), "listening");
        addresses.push(local.to_string());
        accept_tasks.push(tokio::spawn(listener::accept_loop(
            l,
            acceptor.clone(),
            service.clone(),
            serving.clone(),
            graceful.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(addr) = &config.monitoring.listen {
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| ServerError::Bind {
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source: std::io::Error::other("invalid monitoring.listen"),
        })?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        tracing::info!(addr = %addr, "monitoring listener (plain HTTP: /healthz, /readyz, /metrics)");
        let monitoring = warp::service(http::monitoring_routes(ctx.clone()));
        let plain = Arc::new(listener::Serving::new(&config.server, Vec::new()));
        accept_tasks.push(tokio::spawn(listener::accept_loop(
            l,
            None,
            monitoring,
            plain,
            graceful.clone(),
            shutdown_rx.clone(),
        )));
    }

    let purge_age = Duration::from_secs(config.storage.upload_max_age_hours.saturating_mul(3600));
    let purge_storage = storage.clone();
    let purge_index = ctx.gate.index().cloned();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Some(index) = &purge_index {
                purge_index_records(index.clone()).await;
            }
            match purge_storage.uploads_purge(purge_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged expired upload sessions"),
                Err(e) => tracing::warn!(error = %e, "purging upload sessions failed"),
            }
        }
    });

    systemd::spawn_watchdog();
    systemd::ready(&format!("serving on {}", addresses.join(", ")));

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    systemd::stopping();
    let _ = shutdown_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    purge.abort();
    if let Some(task) = event_task {
        let _ = task.await;
    }
    if let Some(task) = webhook_task {
        let _ = task.await;
    }
    drop(watches);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long the index remembers applied event ids: registries retry for far less.
const APPLIED_EVENTS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Drops expired refresh tokens and old applied-event ids from the index store.
async fn purge_index_records(index: Arc<crate::index::endpoint::EmbeddedIndex>) {
    use crate::index::token::RefreshStore;
    let result = tokio::task::spawn_blocking(move || {
        let now = crate::index::token::unix_seconds(std::time::SystemTime::now());
        let tokens = index.store.purge_expired(now)?;
        let events = index
            .store
            .purge_applied_events(now.saturating_sub(APPLIED_EVENTS_KEPT.as_secs()) as i64)
            .map_err(crate::index::token::RefreshError::from)?;
        Ok::<_, crate::index::token::RefreshError>((tokens, events))
    })
    .await;
    match result {
        Ok(Ok((0, 0))) => {}
        Ok(Ok((tokens, events))) => {
            tracing::info!(
                refresh_tokens = tokens,
                event_ids = events,
                "purged old index records"
            )
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "purging index records failed"),
        Err(e) => tracing::warn!(error = %e, "purging index records failed"),
    }
}

/// SIGHUP reloads users, rules and the certificate.
fn spawn_sighup_handler(
    cert_store: Option<Arc<tls::CertStore>>,
    reload_auth: Option<Arc<dyn Fn() + Send + Sync>>,
) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; file changes still reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let cert_store = cert_store.clone();
            let reload_auth = reload_auth.clone();
            // Loading reads files: keep it off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(store) = &cert_store {
                    reload_certificate(store);
                }
                if let Some(reload) = &reload_auth {
                    reload();
                }
            })
            .await;
            systemd::reloading_done("reloaded");
        }
    });
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
