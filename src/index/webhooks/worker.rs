//! The webhook worker: one background task that sends due deliveries from the store's
//! outbox, a few at a time, records each attempt's outcome there (delivered; retry later
//! with backoff; failed for good), and otherwise sleeps until the next delivery is due,
//! a new event wakes it, or its periodic look comes round. All state is in the database,
//! so stopping it at any moment (shutdown, crash) loses nothing: an attempt cut short is
//! simply still pending, and is sent again, with the same delivery id, after a restart.
//! It also forgets finished deliveries after [`HISTORY_DAYS`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{
    signature, Webhooks, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::index::store::{AttemptOutcome, DueDelivery, HookRef, Store, StoreError};

/// Deliveries in flight at once: enough that one slow receiver does not hold up the
/// others, few enough to stay a small background load.
pub const CONCURRENCY: usize = 4;
/// The longest the worker sleeps without looking at the outbox (a backstop: pushes wake
/// it, and it knows when the next retry is due).
const TICK: Duration = Duration::from_secs(30);
/// Finished deliveries are kept this long for their history.
pub const HISTORY_DAYS: i64 = 30;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The most of an error message kept in a delivery's history.
const MAX_ERROR_LEN: usize = 300;

/// Starts the worker on the current runtime until `shutdown` turns true (or its sender is
/// dropped).
pub fn spawn(
    store: Arc<Store>,
    hooks: Arc<Webhooks>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(store, hooks, shutdown))
}

/// Runs `f` on the blocking pool (the store is synchronous).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn run(store: Arc<Store>, hooks: Arc<Webhooks>, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(global_hooks = hooks.global.len(), "webhook worker started");
    let mut tasks: JoinSet<()> = JoinSet::new();
    // Which delivery each task sends, so a finished (or panicked) task frees its id.
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut last_purge: Option<Instant> = None;
    loop {
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            purge(&store).await;
        }
        let mut wait = TICK;
        if tasks.len() < CONCURRENCY {
            let now = unix_now();
            let busy: HashSet<String> = running.values().cloned().collect();
            // Ask for enough that the ones already in flight (still pending, so listed
            // again) do not crowd out new ones.
            let want = CONCURRENCY - tasks.len() + busy.len();
            let s = store.clone();
            match blocking(move || s.due_deliveries(now, want)).await {
                Ok(due) => {
                    let free = CONCURRENCY - tasks.len();
                    for delivery in due.into_iter().filter(|d| !busy.contains(&d.id)).take(free) {
                        let id = delivery.id.clone();
                        let handle = tasks.spawn(attempt(store.clone(), hooks.clone(), delivery));
                        running.insert(handle.id(), id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot read the outbox"),
            }
            if tasks.len() < CONCURRENCY {
                let s = store.clone();
                if let Ok(Some(next)) = blocking(move || s.next_delivery_at()).await {
                    let now = unix_now();
                    if next > now {
                        let secs = u64::try_from(next - now).unwrap_or(u64::MAX);
                        wait = Duration::from_secs(secs).min(TICK);
                    }
                }
            }
        }
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let task = match done {
                    Ok((task, ())) => task,
                    Err(e) => {
                        tracing::error!(error = %e, "webhooks: a delivery task failed");
                        e.id()
                    }
                };
                running.remove(&task);
            }
            () = hooks.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Cut short, the attempts stay pending and go out again (same ids) after a restart.
    let abandoned = tasks.len();
    tasks.shutdown().await;
    tracing::info!(abandoned, "webhook worker stopped");
}

async fn purge(store: &Arc<Store>) {
    let older_than = unix_now() - HISTORY_DAYS * 86_400;
    let s = store.clone();
    match blocking(move || s.purge_deliveries(older_than)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "webhooks: forgot old finished deliveries"),
        Err(e) => tracing::warn!(error = %e, "webhooks: purging old deliveries failed"),
    }
}

/// How a hook is named in logs: never its URL (which may carry a token in its query).
fn hook_label(hook: &HookRef) -> String {
    match hook {
        HookRef::Repository(id) => format!("repository:{id}"),
        HookRef::Global(name) => format!("global:{name}"),
    }
}

/// Why an attempt did not count as delivered.
#[derive(Debug)]
enum Failure {
    /// No HTTP answer: DNS, connection, TLS, timeout.
    Network(String),
    /// A 3xx: not followed.
    Redirect(http::StatusCode),
    /// Any other non-2xx answer.
    Status(http::StatusCode),
    /// Nothing to send to (the hook is gone from the config).
    NoTarget(&'static str),
}

impl Failure {
    fn status(&self) -> Option<u16> {
        match self {
            Failure::Redirect(s) | Failure::Status(s) => Some(s.as_u16()),
            Failure::Network(_) | Failure::NoTarget(_) => None,
        }
    }

    fn message(&self) -> String {
        let text = match self {
            Failure::Network(e) => format!("request failed: {e}"),
            Failure::Redirect(s) => {
                format!("receiver answered {s}; redirects are not followed")
            }
            Failure::Status(s) => format!("receiver answered {s}"),
            Failure::NoTarget(why) => (*why).to_owned(),
        };
        truncate(text, MAX_ERROR_LEN)
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// One attempt of `delivery`, recorded in the store.
async fn attempt(store: Arc<Store>, hooks: Arc<Webhooks>, delivery: DueDelivery) {
    let label = hook_label(&delivery.hook);
    let result = match (&delivery.hook, &delivery.target) {
        (HookRef::Repository(_), Some((url, secret))) => send(&hooks, url, secret, &delivery).await,
        (HookRef::Global(name), _) => match hooks.global_hook(name) {
            Some(g) => send(&hooks, g.url.as_str(), &g.secret, &delivery).await,
            None => Err(Failure::NoTarget(
                "the global hook is no longer in the configuration",
            )),
        },
        (HookRef::Repository(_), None) => Err(Failure::NoTarget("the hook no longer exists")),
    };
    let attempts = delivery.attempts.saturating_add(1);
    let now = unix_now();
    let outcome = match result {
        Ok(status) => {
            tracing::info!(
                delivery = %delivery.id,
                hook = %label,
                event = delivery.event.as_str(),
                status,
                attempt = attempts,
                "webhook delivered"
            );
            AttemptOutcome::Delivered { status }
        }
        Err(failure) => {
            let permanent = matches!(failure, Failure::NoTarget(_));
            if permanent || attempts >= hooks.max_attempts {
                tracing::warn!(
                    delivery = %delivery.id,
                    hook = %label,
                    event = delivery.event.as_str(),
                    attempt = attempts,
                    error = %failure.message(),
                    "webhook delivery failed for good"
                );
                AttemptOutcome::Failed {
                    status: failure.status(),
                    error: failure.message(),
                }
            } else {
                let wait = backoff(hooks.retry_base_secs, hooks.retry_max_secs, attempts);
                tracing::warn!(
                    delivery = %delivery.id,
                    hook = %label,
                    event = delivery.event.as_str(),
                    attempt = attempts,
                    retry_in_secs = wait,
                    error = %failure.message(),
                    "webhook delivery failed; will retry"
                );
                AttemptOutcome::Retry {
                    status: failure.status(),
                    error: failure.message(),
                    next_attempt_at: now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
                }
            }
        }
    };
    let id = delivery.id.clone();
    match blocking(move || store.record_attempt(&id, &outcome, now)).await {
        Ok(true) => {}
        // Redelivered, or its hook deleted, while this attempt ran.
        Ok(false) => {
            tracing::debug!(delivery = %delivery.id, "webhooks: delivery changed during its attempt")
        }
        // Still pending in the database: it is attempted again, same id.
        Err(e) => {
            tracing::error!(delivery = %delivery.id, error = %e, "webhooks: recording an attempt failed")
        }
    }
}

/// POSTs the delivery's body to `url`, signed with `secret`; the status for a 2xx answer.
async fn send(
    hooks: &Webhooks,
    url: &str,
    secret: &crate::index::store::WebhookSecret,
    delivery: &DueDelivery,
) -> Result<u16, Failure> {
    // Checked at send time too: allow_http may have been turned off since the hook was
    // stored (the client refuses http then as well).
    let url = super::config::check_url(url, hooks.allow_http, &hooks.allowed_hosts)
        .map_err(|_| Failure::NoTarget("the hook's URL is not allowed by the configuration"))?;
    let response = hooks
        .client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(DELIVERY_HEADER, &delivery.id)
        .header(EVENT_HEADER, delivery.event.as_str())
        .header(TIMESTAMP_HEADER, unix_now().to_string())
        .header(
            SIGNATURE_HEADER,
            signature(secret, delivery.body.as_bytes()),
        )
        .body(delivery.body.clone())
        .send()
        .await
        // Without the URL: it may carry a token in its query, and errors are logged.
        .map_err(|e| Failure::Network(crate::client::error_chain(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else if status.is_redirection() {
        Err(Failure::Redirect(status))
    } else {
        Err(Failure::Status(status))
    }
}

/// Seconds to wait after failed attempt number `attempts` (1-based): `base` doubling per
/// attempt, ±20% jitter so hooks that failed together do not retry in step, at most
/// `max`, at least 1.
fn backoff(base: u64, max: u64, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    let delay = base.saturating_mul(1u64 << doublings).min(max);
    let r = getrandom::u32().unwrap_or(u32::MAX / 2);
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u32::MAX));
    // At most `max` (≤ 86400) times 1.2: the cast back cannot truncate.
    let jittered = (delay as f64 * factor).round() as u64;
    jittered.clamp(1, max.max(1))
}

/// Resolves once shutdown is requested or can no longer be requested (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..50 {
            let first = backoff(5, 3600, 1);
            assert!((4..=6).contains(&first), "{first}");
            let third = backoff(5, 3600, 3);
            assert!((16..=24).contains(&third), "{third}");
            assert!(backoff(5, 3600, 40) <= 3600);
            assert!(backoff(5, 3600, 40) >= 2880);
            assert_eq!(backoff(1, 1, 1), 1);
        }
    }

    #[test]
    fn errors_are_kept_short() {
        let long = "é".repeat(400);
        let t = truncate(long, 301);
        assert!(t.len() <= 304 && t.ends_with('…'));
        let f = Failure::Redirect(http::StatusCode::FOUND);
        assert_eq!(f.status(), Some(302));
        assert!(f.message().contains("not followed"));
        assert_eq!(Failure::Network("x".into()).status(), None);
    }
}
