//! The appliance features, end to end against the real binary: systemd integration
//! (sd_notify READY/STATUS/WATCHDOG/STOPPING, socket activation), certificate reload under
//! live connections, the client allow-list, full-disk behaviour (watermark and ENOSPC),
//! read-only maintenance mode, health endpoints and the monitoring listener, and graceful
//! shutdown with a resumable upload.
//!
//! These tests start `holdfast` with configs of their own (they need keys in `[server]`,
//! `[tls]` and `[storage]`, which `TestServer` writes itself). Every process is started in
//! a process group of its own and killed with it when its guard is dropped.

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

// ---------------------------------------------------------------------------------------
// Helpers: processes, configs, clients.
// ---------------------------------------------------------------------------------------

/// A process started by a test (holdfast itself, or a wrapper that execs it), in a process
/// group of its own, its stdout and stderr appended to `log`. Dropping it kills the group.
struct Proc {
    child: Child,
    exited: Option<ExitStatus>,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: Command, log: &Path) -> Proc {
        Proc::spawn_with_env(cmd, log, &[])
    }

    /// `holdfast serve --config CONFIG` with extra environment variables.
    fn holdfast(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--config").arg(config);
        Proc::spawn_with_env(cmd, log, envs)
    }

    fn spawn_with_env(mut cmd: Command, log: &Path, envs: &[(&str, &str)]) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        // Variables of an outer service manager must not leak into the process under test,
        // and RUST_LOG would override the log level whose lines the tests look for.
        for k in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "RUST_LOG",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        Proc {
            child,
            exited: None,
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (a name such as "TERM" or "HUP") to the process.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("wait for child");
        }
        self.exited
    }

    /// Waits (blocking) up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (without blocking the runtime) up to `limit` for the process to exit.
    async fn wait_exit_async(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process wrote so far, without colour codes.
    fn log(&self) -> String {
        strip_ansi_codes(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn kill_now(&mut self) {
        if self.try_exit().is_none() {
            // The group first (a wrapper may have forked), then the leader itself. The
            // leader is not reaped yet, so its pid (= the group id) cannot be reused.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pid())])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Counts the lines of `log` containing `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// A config file's text: `[server]` listening on `ports` (plus `server_extra` lines),
/// `[tls]` with `tls` lines, `[storage]` at `data` with `storage_extra` lines, and `rest`
/// (whole tables). Authentication is off unless `rest` has an `[auth]` table.
fn config_text(
    ports: &[u16],
    server_extra: &str,
    tls: &str,
    data: &Path,
    storage_extra: &str,
    rest: &str,
) -> String {
    let listen: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let auth = if rest.contains("[auth]") {
        ""
    } else {
        "[auth]\nmode = \"none\"\n"
    };
    format!(
        "[server]\nlisten = [{}]\n{server_extra}\n\n[tls]\nenabled = true\n{tls}\n\n[storage]\npath = \"{}\"\n{storage_extra}\n\n{auth}\n{rest}\n",
        listen.join(", "),
        data.display()
    )
}

/// A client that trusts only the CA in `ca` (PEM).
fn client_trusting(ca: &Path) -> reqwest::Client {
    client_builder_trusting(ca).build().unwrap()
}

fn client_builder_trusting(ca: &Path) -> reqwest::ClientBuilder {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
}

/// Waits until `GET https://127.0.0.1:PORT/v2/` answers (200, or 401 with auth on) with a
/// client trusting `ca` (which a first run may still be generating); returns that client.
async fn wait_ready(p: &mut Proc, ca: &Path, port: u16) -> reqwest::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("https://127.0.0.1:{port}/v2/");
    let mut last = String::from("CA not written yet");
    loop {
        if let Some(status) = p.try_exit() {
            panic!("holdfast exited early ({status}):\n{}", p.log());
        }
        if ca.exists() {
            let client = client_trusting(ca);
            match client
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 || r.status() == 401 => return client,
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = format!("{e:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "holdfast did not answer on {url} within 20 s (last: {last}):\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the log until `count_lines(log, needle) > before`; panics after `limit`.
async fn wait_log_count_above(p: &Proc, needle: &str, before: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let log = p.log();
        if count_lines(&log, needle) > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no new log line with {needle:?} within {limit:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `holdfast cert init --dir DIR`, asserting success.
fn cert_init(dir: &Path) {
    let out = Command::new(BIN)
        .args(["cert", "init", "--dir"])
        .arg(dir)
        .output()
        .expect("run holdfast cert init");
    assert!(
        out.status.success(),
        "holdfast cert init --dir {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.crt", "server.crt", "server.key"] {
        assert!(dir.join(f).is_file(), "cert init wrote no {f}");
    }
}

/// Replaces `to` with the content of `from` the way deployment tools do: a temp file in
/// the same folder renamed over it.
fn replace_file_atomically(from: &Path, to: &Path) {
    let tmp = to.with_file_name(format!(
        ".{}.new",
        to.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// The error JSON's first code.
fn first_code(v: &serde_json::Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or_default()
}

/// An `Api` (the shared registry helpers) over an arbitrary client and port.
fn api(client: &reqwest::Client, port: u16) -> Api {
    Api {
        c: client.clone(),
        base: format!("https://127.0.0.1:{port}"),
    }
}

/// Whether a CI run demands that every test really runs (no skipping).
fn skipping_forbidden() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HOLDFAST_REQUIRE_CLIENTS").is_some()
}

// ---------------------------------------------------------------------------------------
// 1. sd_notify
// ---------------------------------------------------------------------------------------

/// A notification datagram and when it arrived.
type Msg = (Instant, String);

/// READY=1 with a STATUS naming the address once listening, WATCHDOG=1 pings at half the
/// WATCHDOG_USEC interval, STOPPING=1 on SIGTERM and a clean exit.
#[test]
fn sd_notify_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if tx.send((Instant::now(), msg)).is_err() {
                        break;
                    }
                }
            }
        })
    };
    struct StopReader(Arc<AtomicBool>);
    impl Drop for StopReader {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_reader = StopReader(stop.clone());

    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(
            &[port],
            "shutdown_grace_secs = 5",
            "",
            &dir.path().join("data"),
            "",
            "",
        ),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let mut p = Proc::holdfast(
        &config,
        &log,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );

    let mut seen: Vec<Msg> = Vec::new();
    let recv_until = |seen: &mut Vec<Msg>,
                      p: &mut Proc,
                      limit: Duration,
                      done: &dyn Fn(&[Msg]) -> bool|
     -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(seen) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            if let Ok(m) = rx.recv_timeout(Duration::from_millis(50)) {
                seen.push(m);
            } else if p.try_exit().is_some() {
                // Drain what is left, then give up waiting.
                while let Ok(m) = rx.try_recv() {
                    seen.push(m);
                }
                return done(seen);
            }
        }
    };
    let show = |seen: &[Msg]| -> Vec<String> { seen.iter().map(|(_, m)| m.clone()).collect() };

    // READY=1 and STATUS naming the listen address, in one message.
    let addr = format!("127.0.0.1:{port}");
    let is_ready = |m: &str| m.lines().any(|l| l == "READY=1");
    let got_ready = recv_until(&mut seen, &mut p, Duration::from_secs(20), &|s: &[(
        Instant,
        String,
    )]| {
        s.iter().any(|(_, m)| is_ready(m))
    });
    assert!(
        got_ready,
        "no READY=1 within 20 s; messages: {:?}\nlog:\n{}",
        show(&seen),
        p.log()
    );
    let (ready_at, ready_msg) = seen.iter().find(|(_, m)| is_ready(m)).unwrap().clone();
    let status_line = ready_msg
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without a STATUS= line: {ready_msg:?}"));
    assert!(
        status_line.contains(&addr),
        "STATUS should name the listen address {addr}: {status_line:?}"
    );
    // Ready means listening.
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("READY=1 sent but {addr} refuses connections: {e}"));

    // Watchdog pings keep coming: WATCHDOG_USEC=300000 means one every ~150 ms.
    let watchdog_after_ready = |s: &[Msg]| {
        s.iter()
            .filter(|(t, m)| *t >= ready_at && m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    };
    let window_end = ready_at + Duration::from_millis(1200);
    recv_until(
        &mut seen,
        &mut p,
        window_end.saturating_duration_since(Instant::now()),
        &|_: &[Msg]| false,
    );
    let pings = watchdog_after_ready(&seen);
    assert!(
        pings >= 2,
        "expected at least 2 WATCHDOG=1 pings within ~1 s of READY, got {pings}; messages: {:?}\nlog:\n{}",
        show(&seen),
        p.log()
    );
    // And they go on (not a burst at start-up only).
    let before = seen.len();
    let more = recv_until(&mut seen, &mut p, Duration::from_secs(2), &|s: &[(
        Instant,
        String,
    )]| {
        s[before..]
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
    });
    assert!(more, "watchdog pings stopped: {:?}", show(&seen));

    // SIGTERM: STOPPING=1, then a clean exit within the grace period.
    let before = seen.len();
    p.signal("TERM");
    let stopping = recv_until(&mut seen, &mut p, Duration::from_secs(5), &|s: &[(
        Instant,
        String,
    )]| {
        s[before..]
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1"))
    });
    assert!(
        stopping,
        "no STOPPING=1 after SIGTERM; messages since: {:?}\nlog:\n{}",
        show(&seen[before..]),
        p.log()
    );
    let status = p.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "holdfast did not exit within the grace period:\n{}",
            p.log()
        )
    });
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        p.log()
    );
    drop(_stop_reader);
    reader.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Socket activation
// ---------------------------------------------------------------------------------------

fn socket_activate(listen_port: u16, config: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{listen_port}"))
        .arg(BIN)
        .arg("serve")
        .arg("--config")
        .arg(config);
    Proc::spawn(cmd, log)
}

/// GETs `url` until it answers (connection refused while nothing listens yet); panics after
/// 20 s.
async fn get_until_answered(p: &mut Proc, client: &reqwest::Client, url: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) => return r.status().as_u16(),
            Err(e) => {
                if let Some(s) = p.try_exit() {
                    panic!(
                        "process exited ({s}) before {url} answered: {e:?}\n{}",
                        p.log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{url} did not answer within 20 s: {e:?}\n{}",
                    p.log()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Under `systemd-socket-activate`, holdfast starts on the first connection, serves the
/// passed socket (LISTEN_FDS=1) as well as its own `listen` address, and a `listen` equal
/// to the passed socket is not bound twice.
#[tokio::test(flavor = "multi_thread")]
async fn socket_activation_serves_the_passed_socket() {
    if !have("systemd-socket-activate") {
        assert!(
            !skipping_forbidden(),
            "systemd-socket-activate is not installed (package systemd)"
        );
        eprintln!("SKIP: systemd-socket-activate is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    cert_init(&tls);
    let ca = tls.join("ca.crt");
    let tls_lines = format!(
        "cert = \"{}\"\nkey = \"{}\"",
        tls.join("server.crt").display(),
        tls.join("server.key").display()
    );
    let client = client_trusting(&ca);

    // The passed socket on P1, the configured listen address P2.
    let (p1, p2) = (free_port(), free_port());
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(
            &[p2],
            "",
            &tls_lines,
            &dir.path().join("data"),
            "",
            "[auth]\nmode = \"none\"\n",
        ),
    )
    .unwrap();
    let log = dir.path().join("activate.log");
    let mut p = socket_activate(p1, &config, &log);
    // Before any connection only the activator listens: holdfast has not started.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("Listening on") {
        assert!(
            p.try_exit().is_none(),
            "systemd-socket-activate exited:\n{}",
            p.log()
        );
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate does not listen:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", p2)).is_err(),
        "P2 listens before the first connection on P1: holdfast was not started on demand"
    );

    // The first connection to P1 starts holdfast, which serves it on the passed socket.
    let url1 = format!("https://127.0.0.1:{p1}/v2/");
    let status = get_until_answered(&mut p, &client, &url1).await;
    assert_eq!(status, 200, "GET {url1}\n{}", p.log());
    let log_text = p.log();
    assert!(
        log_text.contains("Execing"),
        "the activator started the service: {log_text}"
    );
    // A fresh connection too (not only the one that triggered the start).
    let r = client_trusting(&ca).get(&url1).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The configured listen address works as well.
    let url2 = format!("https://127.0.0.1:{p2}/v2/");
    let r = client_trusting(&ca)
        .get(&url2)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url2}: {e:?}\n{}", p.log()));
    assert_eq!(r.status(), 200);
    let log_text = p.log();
    for port in [p1, p2] {
        assert!(
            log_text
                .lines()
                .any(|l| l.contains("listening") && l.contains(&format!("127.0.0.1:{port}"))),
            "holdfast logs that it listens on {port}:\n{log_text}"
        );
    }
    drop(p);

    // `listen` equal to the passed socket's address: served once, no "address in use".
    let p3 = free_port();
    let config2 = dir.path().join("same.toml");
    std::fs::write(
        &config2,
        config_text(
            &[p3],
            "",
            &tls_lines,
            &dir.path().join("data"),
            "",
            "[auth]\nmode = \"none\"\n",
        ),
    )
    .unwrap();
    let log2 = dir.path().join("activate-same.log");
    let mut p = socket_activate(p3, &config2, &log2);
    let url3 = format!("https://127.0.0.1:{p3}/v2/");
    let status = get_until_answered(&mut p, &client_trusting(&ca), &url3).await;
    assert_eq!(status, 200, "GET {url3}\n{}", p.log());
    // Still running (it did not fail to bind) a moment later.
    let r = client_trusting(&ca).get(&url3).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(p.try_exit().is_none(), "holdfast exited:\n{}", p.log());
    let log_text = p.log();
    assert!(
        !log_text.to_ascii_lowercase().contains("address in use")
            && !log_text.contains("cannot listen"),
        "a listen address equal to the passed socket must not be bound again:\n{log_text}"
    );
    let listening = log_text
        .lines()
        .filter(|l| l.contains("listening") && l.contains(&format!("127.0.0.1:{p3}")))
        .count();
    assert_eq!(
        listening, 1,
        "the address is served exactly once:\n{log_text}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Certificate swap under a live connection
// ---------------------------------------------------------------------------------------

/// A fresh client (new connection) trusting only `ca` gets an answer from `/v2/`.
async fn fresh_client_ok(ca: &Path, port: u16) -> Result<(), String> {
    let client = client_builder_trusting(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client
        .get(format!("https://127.0.0.1:{port}/v2/"))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_swap_keeps_live_connections_and_refuses_bad_pairs() {
    const REFUSED: &str = "new TLS certificate refused";
    const RELOADED: &str = "reloaded the TLS certificate";

    let dir = tempfile::tempdir().unwrap();
    let (a, b, live) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("live"),
    );
    cert_init(&a);
    cert_init(&b);
    std::fs::create_dir_all(&live).unwrap();
    let (live_cert, live_key) = (live.join("server.crt"), live.join("server.key"));
    std::fs::copy(a.join("server.crt"), &live_cert).unwrap();
    std::fs::copy(a.join("server.key"), &live_key).unwrap();
    let (ca_a, ca_b) = (a.join("ca.crt"), b.join("ca.crt"));

    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(
            &[port],
            // Long enough that the pooled connection is not closed as idle meanwhile.
            "header_read_timeout_secs = 120",
            &format!(
                "cert = \"{}\"\nkey = \"{}\"",
                live_cert.display(),
                live_key.display()
            ),
            &dir.path().join("data"),
            "",
            "",
        ),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let mut p = Proc::holdfast(&config, &log, &[]);
    let old = wait_ready(&mut p, &ca_a, port).await;
    let url = format!("https://127.0.0.1:{port}/v2/");
    // The old client's connection, now idle in its pool.
    let r = old.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let old_version = r.version();
    r.bytes().await.unwrap();
    assert!(
        fresh_client_ok(&ca_b, port).await.is_err(),
        "CA B must not verify cert A"
    );

    // Half a swap: the new key with the old certificate is refused; A keeps serving.
    let refused_before = count_lines(&p.log(), REFUSED);
    replace_file_atomically(&b.join("server.key"), &live_key);
    wait_log_count_above(&p, REFUSED, refused_before, Duration::from_secs(10)).await;
    fresh_client_ok(&ca_a, port)
        .await
        .unwrap_or_else(|e| panic!("after a half swap A must keep serving: {e}\n{}", p.log()));

    // The other half: the pair B loads; fresh connections get B.
    let reloaded_before = count_lines(&p.log(), RELOADED);
    replace_file_atomically(&b.join("server.crt"), &live_cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fresh_client_ok(&ca_b, port).await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "cert B is not served 10 s after the swap (last: {e}):\n{}",
                p.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        count_lines(&p.log(), RELOADED) > reloaded_before,
        "the log records the reload:\n{}",
        p.log()
    );
    assert!(
        fresh_client_ok(&ca_a, port).await.is_err(),
        "fresh connections no longer get cert A"
    );

    // The connection made under A is still open and serving (a new one could not verify).
    let r = old.get(&url).send().await.unwrap_or_else(|e| {
        panic!(
            "the pooled connection made under cert A was dropped by the swap: {e:?}\n{}",
            p.log()
        )
    });
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), old_version);
    r.bytes().await.unwrap();

    // A bad swap: garbage in the certificate file is refused; B keeps serving.
    let refused_before = count_lines(&p.log(), REFUSED);
    std::fs::write(
        &live_cert,
        b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    wait_log_count_above(&p, REFUSED, refused_before, Duration::from_secs(10)).await;
    fresh_client_ok(&ca_b, port)
        .await
        .unwrap_or_else(|e| panic!("B must keep serving after a bad swap: {e}\n{}", p.log()));

    // SIGHUP re-reads the files too: with the garbage still there, another refusal.
    let refused_before = count_lines(&p.log(), REFUSED);
    let hups_before = count_lines(&p.log(), "SIGHUP");
    p.signal("HUP");
    wait_log_count_above(&p, "SIGHUP", hups_before, Duration::from_secs(10)).await;
    wait_log_count_above(&p, REFUSED, refused_before, Duration::from_secs(10)).await;
    fresh_client_ok(&ca_b, port)
        .await
        .unwrap_or_else(|e| panic!("B must keep serving after SIGHUP: {e}\n{}", p.log()));

    // Repair the file (the watcher reloads), then SIGHUP reloads the good pair again.
    let reloaded_before = count_lines(&p.log(), RELOADED);
    replace_file_atomically(&b.join("server.crt"), &live_cert);
    wait_log_count_above(&p, RELOADED, reloaded_before, Duration::from_secs(10)).await;
    let reloaded_before = count_lines(&p.log(), RELOADED);
    p.signal("HUP");
    wait_log_count_above(&p, RELOADED, reloaded_before, Duration::from_secs(10)).await;
    fresh_client_ok(&ca_b, port)
        .await
        .unwrap_or_else(|e| panic!("B after SIGHUP: {e}\n{}", p.log()));
    let r = old.get(&url).send().await.unwrap_or_else(|e| {
        panic!(
            "the pooled connection was dropped by a reload: {e:?}\n{}",
            p.log()
        )
    });
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // Back to A the quick way (key then cert, within the debounce): served again.
    replace_file_atomically(&a.join("server.key"), &live_key);
    replace_file_atomically(&a.join("server.crt"), &live_cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fresh_client_ok(&ca_a, port).await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "cert A is not served 10 s after swapping back (last: {e}):\n{}",
                p.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = old.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(p.try_exit().is_none(), "holdfast exited:\n{}", p.log());
}

// ---------------------------------------------------------------------------------------
// 4. Allow-list
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_closes_other_clients_before_tls() {
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        config_text(&[port], "allow = [\"127.0.0.1/32\"]", "", &data, "", ""),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let mut p = Proc::holdfast(&config, &log, &[]);
    let ca = data.join("tls/ca.crt");
    let client = wait_ready(&mut p, &ca, port).await;
    let url = format!("https://127.0.0.1:{port}/v2/");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // A client from 127.0.0.2 fails, and quickly (closed, not left hanging).
    let outsider = client_builder_trusting(&ca)
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = outsider.get(&url).send().await;
    let took = started.elapsed();
    assert!(
        result.is_err(),
        "a client outside the allow-list got an answer: {:?}",
        result.map(|r| r.status())
    );
    assert!(
        took < Duration::from_secs(3),
        "refusal took {took:?}: {:?}",
        result.err()
    );

    // Raw TCP from 127.0.0.2: accepted by the kernel, then closed without a single byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut tcp = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("TCP connect from 127.0.0.2");
    let mut buf = [0u8; 64];
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the server should close the connection at once, not leave it open");
    match read {
        Ok(n) => assert_eq!(n, 0, "the server sent {n} bytes to an outsider"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
            "unexpected error reading from a refused connection: {e:?}"
        ),
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // The allowed address still works on a fresh connection.
    let r = client_trusting(&ca).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

// ---------------------------------------------------------------------------------------
// 5. Full disk
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted on a temporary folder; unmounted (and the folder removed) on drop.
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "48m"); None when mounting is not possible here.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir: Some(dir) }),
            Ok(o) => {
                eprintln!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            let mut ok = false;
            for _ in 0..20 {
                if Command::new("umount")
                    .arg(&path)
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
                {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&path).status();
            }
            drop(dir);
        }
    }
}

/// Mounts a tmpfs, or says why the test cannot run (failing in CI).
fn tmpfs_or_skip(size: &str) -> Option<Tmpfs> {
    let m = Tmpfs::mount(size);
    if m.is_none() {
        assert!(
            !skipping_forbidden(),
            "cannot mount a tmpfs (needs root): the full-disk tests must run in CI"
        );
        eprintln!("SKIP: cannot mount a tmpfs (needs root)");
    }
    m
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).expect("statvfs");
    st.f_bavail.saturating_mul(st.f_frsize)
}

/// Writes a filler file in `dir` until the filesystem has at most `target_free` bytes free.
fn fill_until(dir: &Path, target_free: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 1 << 20];
    loop {
        let free = free_bytes(dir);
        if free <= target_free {
            break;
        }
        let n = (free - target_free).min(chunk.len() as u64) as usize;
        if let Err(e) = f.write_all(&chunk[..n]) {
            assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::NOSPC.raw_os_error()),
                "writing the filler: {e}"
            );
            break;
        }
    }
    f.sync_all().unwrap();
    path
}

/// Monolithic `POST ?digest=` of `data`; returns the response.
async fn post_blob(api: &Api, repo: &str, data: &[u8]) -> reqwest::Response {
    let mut u = reqwest::Url::parse(&api.url(&format!("/v2/{repo}/blobs/uploads/"))).unwrap();
    u.query_pairs_mut().append_pair("digest", &digest_of(data));
    api.c
        .post(u)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = r.status().as_u16();
    let ct = header(&r, "content-type").unwrap_or_default();
    let body = r.bytes().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "{url}: Content-Type {ct:?}, body {}",
        String::from_utf8_lossy(&body)
    );
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, v)
}

/// Below `[storage] min_free_bytes`, uploads get 507 with the spec's error JSON while reads
/// go on and /readyz reports not ready; freeing space restores pushes without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn full_disk_watermark_refuses_uploads_and_recovers() {
    let Some(mnt) = tmpfs_or_skip("48m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = mnt.path().join("data");
    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(&[port], "", "", &data, "min_free_bytes = 16777216", ""),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let mut p = Proc::holdfast(&config, &log, &[]);
    let ca = data.join("tls/ca.crt");
    let client = wait_ready(&mut p, &ca, port).await;
    let api = api(&client, port);
    let base = api.base.clone();

    // Content pushed while there is room.
    let image = api.push_image("app/one", "v1", OCI_MANIFEST, 7).await;
    let big = pseudo_random_bytes(70, 2 << 20);
    let big_digest = api.push_blob("app/one", &big).await;
    let small = pseudo_random_bytes(71, 50_000);
    let small_digest = api.push_blob("app/one", &small).await;
    // An upload session opened before the disk fills.
    let session = api.start_upload("app/one").await;
    let (s, v) = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(s, 200, "/readyz with room: {v}");

    // Fill the filesystem to 8 MiB free: below the 16 MiB watermark, with room to spare.
    let filler = fill_until(mnt.path(), 8 << 20);
    let free = free_bytes(mnt.path());
    assert!(free < 16 << 20, "filled to {free} bytes free");

    // Every kind of upload is refused with 507 and the spec's error JSON.
    let r = client
        .post(format!("{base}/v2/app/two/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 507, &[]).await;
    assert_eq!(first_code(&v), "DENIED", "{v}");
    let other = pseudo_random_bytes(72, 10_000);
    let v = expect_error(post_blob(&api, "app/two", &other).await, 507, &[]).await;
    assert_eq!(first_code(&v), "DENIED", "{v}");
    let v = expect_error(api.patch_chunk(&session, 0, &other).await, 507, &[]).await;
    assert_eq!(first_code(&v), "DENIED", "{v}");
    let manifest2 = {
        let m: serde_json::Value = serde_json::from_slice(&image.bytes).unwrap();
        let mut m = m;
        m["annotations"] = serde_json::json!({"copy": "2"});
        manifest_bytes(&m)
    };
    let v = expect_error(
        api.put_manifest("app/one", "v2", OCI_MANIFEST, &manifest2)
            .await,
        507,
        &[],
    )
    .await;
    assert_eq!(first_code(&v), "DENIED", "{v}");
    assert!(
        p.log().contains("free-space watermark"),
        "the refusal is logged:\n{}",
        p.log()
    );

    // Reads go on, byte for byte.
    assert_eq!(api.get_blob_bytes("app/one", &big_digest).await, big);
    assert_eq!(api.get_blob_bytes("app/one", &small_digest).await, small);
    let r = api.get_manifest("app/one", "v1").await;
    assert_eq!(expect_status(r, 200).await.to_vec(), image.bytes);
    let r = api.get_manifest("app/one", &image.digest).await;
    assert_eq!(expect_status(r, 200).await.to_vec(), image.bytes);
    let r = api
        .head(&format!("/v2/app/two/blobs/{}", digest_of(&other)))
        .await;
    expect_head(r, 404).await;

    // Health: alive, not ready (and says why).
    let (s, v) = get_json(&client, &format!("{base}/healthz")).await;
    assert_eq!(s, 200, "/healthz on a full disk: {v}");
    let (s, v) = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(s, 503, "/readyz below the watermark: {v}");
    assert!(v.to_string().contains("free disk space"), "{v}");

    // Space returns: pushes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let d = api.push_blob("app/two", &other).await;
    assert_eq!(api.get_blob_bytes("app/two", &d).await, other);
    api.push_manifest("app/one", "v2", OCI_MANIFEST, &manifest2)
        .await;
    let r = api.patch_chunk(&session, 0, &other).await;
    expect_status(r, 202).await;
    let r = api.put_upload(&session, &digest_of(&other), None).await;
    expect_status(r, 201).await;
    let (s, v) = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(s, 200, "/readyz after freeing space: {v}");
    assert!(p.try_exit().is_none(), "holdfast exited:\n{}", p.log());
}

/// With the watermark off, a blob larger than the free space hits ENOSPC: 507, nothing
/// stored under its digest, earlier content intact, the partial data cleaned up; the same
/// push succeeds once space is freed.
#[tokio::test(flavor = "multi_thread")]
async fn full_disk_enospc_is_507_and_leaves_nothing_behind() {
    let Some(mnt) = tmpfs_or_skip("48m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = mnt.path().join("data");
    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(&[port], "", "", &data, "min_free_bytes = 0", ""),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let mut p = Proc::holdfast(&config, &log, &[]);
    let ca = data.join("tls/ca.crt");
    let client = wait_ready(&mut p, &ca, port).await;
    let api = api(&client, port);

    let image = api.push_image("app/one", "v1", OCI_MANIFEST, 11).await;
    let earlier = pseudo_random_bytes(80, 1 << 20);
    let earlier_digest = api.push_blob("app/one", &earlier).await;

    // Leave 2 MiB free and push 6 MiB.
    let filler = fill_until(mnt.path(), 2 << 20);
    let free_before = free_bytes(mnt.path());
    let huge = pseudo_random_bytes(81, 6 << 20);
    let huge_digest = digest_of(&huge);
    let r = post_blob(&api, "app/one", &huge).await;
    let v = expect_error(r, 507, &[]).await;
    assert_eq!(first_code(&v), "DENIED", "{v}");
    assert!(
        p.log().contains("storage is full"),
        "the 507 comes from ENOSPC (the watermark is off):\n{}",
        p.log()
    );

    // Nothing under the digest, earlier content intact, the partial data removed.
    let r = api.head(&format!("/v2/app/one/blobs/{huge_digest}")).await;
    expect_head(r, 404).await;
    assert_eq!(
        api.get_blob_bytes("app/one", &earlier_digest).await,
        earlier
    );
    let r = api.get_manifest("app/one", "v1").await;
    assert_eq!(expect_status(r, 200).await.to_vec(), image.bytes);
    let free_after = free_bytes(mnt.path());
    assert!(
        free_after + (256 << 10) >= free_before,
        "the failed upload left data behind: {free_before} bytes free before, {free_after} after"
    );

    // Space freed: the same push succeeds.
    std::fs::remove_file(&filler).unwrap();
    api.push_blob_with_digest("app/one", &huge, &huge_digest)
        .await;
    assert!(api.get_blob_bytes("app/one", &huge_digest).await == huge);
    assert!(p.try_exit().is_none(), "holdfast exited:\n{}", p.log());
}

// ---------------------------------------------------------------------------------------
// 6. Read-only mode
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn read_only_mode_serves_pulls_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    let log = dir.path().join("holdfast.log");
    let ca = data.join("tls/ca.crt");

    // Fill the data folder with a normal server.
    std::fs::write(&config, config_text(&[port], "", "", &data, "", "")).unwrap();
    let mut p = Proc::holdfast(&config, &log, &[]);
    let client = wait_ready(&mut p, &ca, port).await;
    let a = api(&client, port);
    let image = a.push_image("app/one", "v1", OCI_MANIFEST, 3).await;
    let blob = pseudo_random_bytes(30, 40_000);
    let blob_digest = a.push_blob("app/one", &blob).await;
    p.signal("TERM");
    let status = p.wait_exit_async(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop: {status:?}\n{}",
        p.log()
    );
    drop(p);

    // Restart in maintenance mode.
    std::fs::write(
        &config,
        config_text(&[port], "", "", &data, "read_only = true", ""),
    )
    .unwrap();
    let mut p = Proc::holdfast(&config, &log, &[]);
    let client = wait_ready(&mut p, &ca, port).await;
    let a = api(&client, port);
    let base = a.base.clone();

    // Pulls work.
    let r = a.get_manifest("app/one", "v1").await;
    assert_eq!(expect_status(r, 200).await.to_vec(), image.bytes);
    assert_eq!(a.get_blob_bytes("app/one", &blob_digest).await, blob);
    let r = a.get("/v2/app/one/tags/list").await;
    expect_status(r, 200).await;

    async fn refused(resp: reqwest::Response, what: &str) {
        let v = expect_error(resp, 405, &["UNSUPPORTED"]).await;
        let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            msg.to_ascii_lowercase().contains("read-only"),
            "{what}: the message should say read-only: {v}"
        );
    }
    let r = client
        .post(format!("{base}/v2/app/one/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    refused(r, "POST uploads").await;
    let other = pseudo_random_bytes(31, 1000);
    refused(post_blob(&a, "app/new", &other).await, "monolithic POST").await;
    let mut m: serde_json::Value = serde_json::from_slice(&image.bytes).unwrap();
    m["annotations"] = serde_json::json!({"x": "y"});
    refused(
        a.put_manifest("app/one", "v2", OCI_MANIFEST, &manifest_bytes(&m))
            .await,
        "manifest PUT",
    )
    .await;
    refused(
        a.delete(&format!("/v2/app/one/manifests/{}", image.digest))
            .await,
        "manifest DELETE",
    )
    .await;
    refused(
        a.delete(&format!("/v2/app/one/blobs/{blob_digest}")).await,
        "blob DELETE",
    )
    .await;

    // Nothing changed.
    let r = a.get_manifest("app/one", &image.digest).await;
    assert_eq!(expect_status(r, 200).await.to_vec(), image.bytes);
    let r = a
        .head(&format!("/v2/app/new/blobs/{}", digest_of(&other)))
        .await;
    expect_head(r, 404).await;

    // /readyz: ready (reads work), and says read-only.
    let (s, v) = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(s, 200, "/readyz in read-only mode: {v}");
    assert_eq!(v["read_only"], serde_json::json!(true), "{v}");
    assert!(p.log().contains("read-only"), "{}", p.log());
}

// ---------------------------------------------------------------------------------------
// 7. Health and monitoring listener
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_and_monitoring_listener() {
    let mon = free_port();
    let server = TestServer::start(&format!(
        "[auth]\nmode = \"basic\"\n\n[monitoring]\nlisten = \"127.0.0.1:{mon}\"\n"
    ));
    assert!(
        server.data_dir().join("initial-admin-password").exists(),
        "with no users an admin is created"
    );
    let client = server.client();

    // Auth is on for the API ...
    let r = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 401, "GET /v2/ without credentials");
    // ... but not for health, which answers JSON on the TLS port.
    let (s, v) = get_json(&client, &server.url("/healthz")).await;
    assert_eq!(s, 200, "/healthz: {v}");
    assert_eq!(v["status"], "ok", "{v}");
    let (s, v) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(s, 200, "/readyz: {v}");
    assert_eq!(v["status"], "ready", "{v}");

    // The monitoring listener: plain HTTP, health only.
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mon_base = format!("http://127.0.0.1:{mon}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (s, v) = loop {
        match plain.get(format!("{mon_base}/healthz")).send().await {
            Ok(_) => break get_json(&plain, &format!("{mon_base}/healthz")).await,
            Err(e) => assert!(
                Instant::now() < deadline,
                "monitoring listener does not answer: {e:?}\n{}",
                server.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s, 200, "monitoring /healthz: {v}");
    assert_eq!(v["status"], "ok", "{v}");
    let (s, v) = get_json(&plain, &format!("{mon_base}/readyz")).await;
    assert_eq!(s, 200, "monitoring /readyz: {v}");
    assert_eq!(v["status"], "ready", "{v}");
    for path in ["/v2/", "/v2/_catalog", "/v2/app/manifests/latest"] {
        let r = plain.get(format!("{mon_base}{path}")).send().await.unwrap();
        assert_eq!(
            r.status(),
            404,
            "the registry API must not be on the monitoring listener: GET {path}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 8. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// A body of `pieces` chunks of `size` bytes, one every `pause`; `started` is notified
/// once the third chunk has been handed to the client.
fn slow_body_notifying(
    data: Vec<u8>,
    size: usize,
    pause: Duration,
    started: std::sync::Arc<tokio::sync::Notify>,
) -> reqwest::Body {
    let pieces: Vec<Vec<u8>> = data.chunks(size).map(|c| c.to_vec()).collect();
    let s = futures_util::stream::unfold((pieces.into_iter(), 0usize), move |(mut it, n)| {
        let started = started.clone();
        async move {
            let next = it.next()?;
            tokio::time::sleep(pause).await;
            if n == 2 {
                started.notify_one();
            }
            Some((Ok::<_, std::io::Error>(next), (it, n + 1)))
        }
    });
    reqwest::Body::wrap_stream(s)
}

/// SIGTERM during a slow chunked PATCH: the PATCH completes (202), new connections are
/// refused, the process exits 0, and after a restart the upload resumes and finishes.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_completes_in_flight_upload() {
    for http1 in [false, true] {
        graceful_shutdown_round(http1).await;
    }
}

async fn graceful_shutdown_round(http1: bool) {
    let proto = if http1 { "HTTP/1.1" } else { "HTTP/2" };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("holdfast.toml");
    std::fs::write(
        &config,
        config_text(&[port], "shutdown_grace_secs = 15", "", &data, "", ""),
    )
    .unwrap();
    let log = dir.path().join("holdfast.log");
    let ca = data.join("tls/ca.crt");
    let mut p = Proc::holdfast(&config, &log, &[]);
    wait_ready(&mut p, &ca, port).await;
    let mut b = client_builder_trusting(&ca);
    if http1 {
        b = b.http1_only();
    }
    let client = b.build().unwrap();
    let a = api(&client, port);
    let upload = a.start_upload("app/slow").await;

    // 24 chunks of 16 KiB, one every 100 ms: ~2.4 s.
    let content = pseudo_random_bytes(90, 24 * 16 * 1024);
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let body = slow_body_notifying(
        content.clone(),
        16 * 1024,
        Duration::from_millis(100),
        started.clone(),
    );
    let patch = {
        let client = client.clone();
        let upload = upload.clone();
        tokio::spawn(async move {
            client
                .patch(upload)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the PATCH body started streaming");
    p.signal("TERM");

    // New connections are refused while the PATCH is still running.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // A connection caught in the accept queue as the listener closes is reset by
            // the kernel: not served either; go on until nothing listens at all.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{proto}: connecting after SIGTERM: {e:?}"),
            Ok(_) => assert!(
                Instant::now() < deadline,
                "{proto}: new connections still accepted 5 s after SIGTERM:\n{}",
                p.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !patch.is_finished(),
        "{proto}: the PATCH should still be running when new connections are refused"
    );

    // The in-flight PATCH completes.
    let r = tokio::time::timeout(Duration::from_secs(15), patch)
        .await
        .expect("PATCH finished")
        .unwrap()
        .unwrap_or_else(|e| panic!("{proto}: the in-flight PATCH failed: {e:?}\n{}", p.log()));
    let range = header(&r, "range");
    expect_status(r, 202).await;
    let end = content.len() as u64 - 1;
    assert_eq!(
        range.as_deref().and_then(parse_upload_range),
        Some((0, end)),
        "{proto}: Range after the PATCH"
    );
    let status = p.wait_exit_async(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{proto}: exit after SIGTERM: {status:?}\n{}",
        p.log()
    );
    assert!(
        !p.log().contains("grace period over"),
        "{proto}: shutdown needed the whole grace period:\n{}",
        p.log()
    );
    drop(p);
    drop(client);

    // After a restart the session is still there, complete, and finishes.
    let mut p = Proc::holdfast(&config, &log, &[]);
    let client = wait_ready(&mut p, &ca, port).await;
    let a = api(&client, port);
    let r = client.get(upload.clone()).send().await.unwrap();
    let range = header(&r, "range");
    expect_status(r, 204).await;
    assert_eq!(
        range.as_deref().and_then(parse_upload_range),
        Some((0, end)),
        "{proto}: upload status after the restart"
    );
    let digest = digest_of(&content);
    let r = a.put_upload(&upload, &digest, None).await;
    expect_status(r, 201).await;
    assert!(a.get_blob_bytes("app/slow", &digest).await == content);
}
