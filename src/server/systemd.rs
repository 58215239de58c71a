//! Being a good systemd citizen: `sd_notify` messages (READY once listening, STATUS lines,
//! watchdog pings from a runtime task, STOPPING on shutdown) and listening sockets handed
//! over by socket activation (`LISTEN_FDS`). Without systemd every call here is a no-op.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the service manager something; failures are logged, never fatal.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
}

pub fn reloading_done(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// When the unit has `WatchdogSec=`, pings at half the interval from a task on the async
/// runtime: if the runtime stalls, the pings stop and systemd restarts the service.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// Listening TCP sockets passed by systemd (`LISTEN_PID`/`LISTEN_FDS`), ready for tokio.
pub fn inherited_listeners() -> io::Result<Vec<TcpListener>> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()?.collect();
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: systemd passed these descriptors to this process (LISTEN_PID matched) and
        // nothing else in the process owns them; each is wrapped exactly once.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        // A socket unit with ListenDatagram= or a FIFO would fail here, which is right.
        listener.local_addr().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("inherited fd {fd} is not a TCP listening socket: {e}"),
            )
        })?;
        listener.set_nonblocking(true)?;
        listeners.push(listener);
    }
    Ok(listeners)
}
