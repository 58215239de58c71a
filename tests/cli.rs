//! The command line and start-up paths: `check-config` verdicts, the embedded default
//! config's first run (generated CA, the one trust line, no regeneration on the second run),
//! explicit plain-HTTP mode, and TLS protocol versions.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_holdfast");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("holdfast.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_accepts_the_shipped_example_and_names_bad_keys() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/holdfast.toml"))
            .unwrap();
    let (ok, out) = check_config(&example);
    assert!(ok, "shipped example must validate: {out}");
    assert!(out.contains("OK"), "{out}");

    let (ok, out) =
        check_config("[server]\nlisten = [\"127.0.0.1:5000\"]\n\n[storage]\npaht = \"/x\"\n");
    assert!(!ok);
    assert!(out.contains("paht"), "names the unknown key: {out}");
    assert!(out.contains("line 5"), "names the line: {out}");

    let (ok, out) = check_config("[server]\nlisten = [\"localhost\"]\n");
    assert!(!ok);
    assert!(out.contains("server.listen"), "{out}");

    let (ok, out) = check_config("[server]\nmax_header_bytes = \"lots\"\n");
    assert!(!ok);
    assert!(out.contains("max_header_bytes"), "{out}");

    let out = Command::new(BIN).arg("check-config").output().unwrap();
    assert!(out.status.success(), "the embedded default is valid");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child whose stdout lines are collected by a thread.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

fn lines_of(child: &mut Child) -> Lines {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Lines { rx }
}

/// Reads on until a line contains `needle`; returns `seen` plus the lines read.
fn read_until_more(lines: &mut Lines, mut seen: Vec<String>, needle: &str) -> Vec<String> {
    if seen.iter().any(|l| l.contains(needle)) {
        return seen;
    }
    let rx = &lines.rx;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
    panic!("no line with {needle:?} within 30 s; saw {seen:?}");
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `holdfast serve` on `port` with auth off, data under `dir/data`, stderr in
/// `dir/log`, and `server_extra` inserted after the `[server]` listen line (it may close
/// that table and open others, e.g. `[tls]`); returns once the port accepts connections.
fn start_configured(dir: &Path, port: u16, server_extra: &str) -> Proc {
    let config = dir.join("holdfast.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\n{server_extra}[storage]\npath = \"{}\"\n[auth]\nmode = \"none\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_for_port(port);
    proc
}

fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

/// The README's "run the registry" command uses the embedded default: 127.0.0.1:5000, data
/// under ./holdfast-data, a generated CA announced in one line, reused on the next start.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_first_run_generates_and_announces_a_ca() {
    if TcpListener::bind("127.0.0.1:5000").is_err() {
        panic!("port 5000 is taken on this machine; the default-config test needs it");
    }
    let cwd = tempfile::tempdir().unwrap();
    let start = || {
        Command::new(BIN)
            .arg("serve")
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first_proc = Proc(start());
    let mut first = lines_of(&mut first_proc.0);
    let lines = read_until_more(&mut first, Vec::new(), "trust the new local CA");
    let trust: Vec<_> = lines.iter().filter(|l| l.contains("trust")).collect();
    assert_eq!(trust.len(), 1, "exactly one line tells how to trust the CA");
    let ca = cwd.path().join("holdfast-data/tls/ca.crt");
    assert!(ca.exists());
    wait_for_port(5000);
    // Authentication is on by default, with a generated admin password shown once.
    let lines = read_until_more(&mut first, lines, "created user `admin`");
    let admin_line = lines
        .iter()
        .find(|l| l.contains("created user `admin`"))
        .unwrap();
    let password = admin_line
        .split("with password ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(password.len() >= 20, "a strong random password");
    let saved =
        std::fs::read_to_string(cwd.path().join("holdfast-data/initial-admin-password")).unwrap();
    assert!(saved.contains(&password));
    let client = https_client(&ca);
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:5000/v2/");
        let r = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("TLS to {host} with the generated CA: {e:?}"));
        assert_eq!(r.status(), 401, "no credentials: asked to sign in");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm="));
        let r = client
            .get(&url)
            .basic_auth("admin", Some(&password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-distribution-api-version"],
            "registry/2.0"
        );
    }
    let key = cwd.path().join("holdfast-data/tls/server.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
        0,
        "the private key is not readable by others"
    );
    drop(first_proc);

    let ca_before = std::fs::read(&ca).unwrap();
    let mut second = Proc(start());
    wait_for_port(5000);
    let out = second.0.stdout.take().unwrap();
    drop(second);
    let mut rest = String::new();
    use std::io::Read;
    let _ = BufReader::new(out).read_to_string(&mut rest);
    assert!(
        !rest.contains("trust the new local CA"),
        "no new CA on the second run: {rest}"
    );
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "the CA is kept");
}

/// Plain HTTP only when the config says so, and then with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_only_when_configured_and_warned() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("log");
    let _proc = start_configured(dir.path(), port, "[tls]\nenabled = false\n");
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("plain HTTP"), "a warning is logged: {text}");
    assert!(
        !dir.path().join("data/tls").exists(),
        "no certificate is generated when TLS is off"
    );
}

/// TLS 1.2 and 1.3 both work; HTTP/2 is offered by ALPN.
#[tokio::test(flavor = "multi_thread")]
async fn tls_versions_and_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _proc = start_configured(dir.path(), port, "");
    let ca = dir.path().join("data/tls/ca.crt");

    for (version, name) in [
        (&rustls::version::TLS12, "TLS 1.2"),
        (&rustls::version::TLS13, "TLS 1.3"),
    ] {
        let pem = std::fs::read(&ca).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("{name} handshake: {e}"));
        let (_, conn) = tls.get_ref();
        assert_eq!(
            conn.alpn_protocol(),
            Some(&b"h2"[..]),
            "{name} negotiates h2"
        );
    }
}

/// Header blocks beyond `server.max_header_bytes` are refused, on HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _proc = start_configured(dir.path(), port, "max_header_bytes = 16384\n");
    let ca = dir.path().join("data/tls/ca.crt");
    let pem = std::fs::read(&ca).unwrap();
    let url = format!("https://127.0.0.1:{port}/v2/");
    let big = "x".repeat(64 * 1024);
    for http1 in [true, false] {
        // reqwest uses rustls' process-wide provider (ring, as holdfast).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
        if http1 {
            b = b.http1_only();
        }
        let client = b.build().unwrap();
        let ok = client
            .get(&url)
            .header("x-small", "y")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        // Refused either with 431, or (when the server closes while the client is still
        // writing the oversized block, or HTTP/2 resets the stream) by the connection.
        if let Ok(r) = client.get(&url).header("x-big", &big).send().await {
            assert_eq!(
                r.status(),
                431,
                "http1={http1}: a 64 KiB header is refused with 431"
            );
        }
    }
}

/// Idle connections are closed: one that never finishes the TLS handshake after
/// `handshake_timeout_secs`, one that sends no request after `header_read_timeout_secs`.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _proc = start_configured(
        dir.path(),
        port,
        "handshake_timeout_secs = 1\nheader_read_timeout_secs = 1\n",
    );

    // No handshake at all.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A finished handshake, then silence.
    let pem = std::fs::read(dir.path().join("data/tls/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf))
        .await
        .expect("server closes an idle connection after the handshake");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after about header_read_timeout_secs"
    );
}
