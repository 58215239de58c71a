//! TLS between two processes: the bare TLS probe of `limits` with its sending end in a
//! separate process (this harness binary started again in the sender role), so data crosses
//! from one process to another as it does from a registry to its client. No HTTP, no disk,
//! no registry logic: the sender writes the pool from memory, the harness reads into one
//! buffer. Set beside a pull, the distance between them is what the registry itself costs;
//! set beside the in-process probe, it is what the process boundary costs on this machine
//! (separate schedulers and wake-ups, each side's thread on its own core or not).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::data::pseudo_random;

/// Set (to the certificate path) in the environment of a harness process started as the sender.
const SENDER_CERT_ENV: &str = "HOLDFAST_BENCH_TLS_SENDER_CERT";
const SENDER_KEY_ENV: &str = "HOLDFAST_BENCH_TLS_SENDER_KEY";
const SENDER_SUITE_ENV: &str = "HOLDFAST_BENCH_TLS_SENDER_SUITE";
const SENDER_BYTES_ENV: &str = "HOLDFAST_BENCH_TLS_SENDER_BYTES";

/// One transfer: MB/s and, per GiB, the sender's and the receiver's CPU seconds.
pub struct TwoProcess {
    pub mb_s: f64,
    pub sender_cpu: f64,
    pub receiver_cpu: f64,
}

/// In a harness process started as the sender, runs that role and returns its exit code;
/// `None` in the harness itself.
pub fn run_if_sender() -> Option<i32> {
    let cert = std::env::var_os(SENDER_CERT_ENV)?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(serve_once(Path::new(&cert))));
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench TLS sender: {e}");
            1
        }
    })
}

/// The sender: listens on a loopback port (printed on stdout), sends the configured number
/// of bytes to the first connection, then waits for the reader to close it, so the harness
/// can read this process's CPU time while it is still running.
async fn serve_once(cert: &Path) -> Result<(), String> {
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} not set"));
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_path = var(SENDER_KEY_ENV)?;
    let key_pem = std::fs::read(&key_path).map_err(|e| format!("{key_path}: {e}"))?;
    let suite = match var(SENDER_SUITE_ENV)?.as_str() {
        "" => None,
        v => Some(rustls::CipherSuite::from(
            v.parse::<u16>().map_err(|e| format!("suite {v}: {e}"))?,
        )),
    };
    let bytes: u64 = var(SENDER_BYTES_ENV)?
        .parse()
        .map_err(|e| format!("{SENDER_BYTES_ENV}: {e}"))?;
    let config = crate::limits::server_config(&cert_pem, &key_pem, suite)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let pool = pseudo_random(0x5e4d, 64 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("port {port}");
    let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept())
        .await
        .map_err(|_| "no connection within 60 s".to_owned())?;
    let (tcp, _) = accepted.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
    crate::limits::send_stream(&mut tls, &pool, bytes)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    // Until the reader hangs up (or a time limit: the harness may have died).
    let mut rest = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(300), tls.read(&mut rest)).await;
    Ok(())
}

/// Starts a sender process (this binary), reads `bytes` bytes from it as the in-process probe
/// does, and measures the rate and both processes' CPU time from the end of the handshake to
/// the last byte.
pub async fn two_process_rate(
    (cert_pem, key_pem, ca_pem): &(Vec<u8>, Vec<u8>, Vec<u8>),
    suite: Option<rustls::CipherSuite>,
    bytes: u64,
    dir: &Path,
) -> Result<TwoProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the harness's own path: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(&key, key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut child = tokio::process::Command::new(exe)
        .env(SENDER_CERT_ENV, &cert)
        .env(SENDER_KEY_ENV, &key)
        .env(
            SENDER_SUITE_ENV,
            suite.map(|s| u16::from(s).to_string()).unwrap_or_default(),
        )
        .env(SENDER_BYTES_ENV, bytes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the TLS sender: {e}"))?;
    let pid = child
        .id()
        .ok_or("the TLS sender exited at once")?
        .to_string();
    let stdout = child.stdout.take().ok_or("no stdout from the TLS sender")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| "the TLS sender printed no port within 30 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("the TLS sender said {line:?}, not its port"))?;
    let mut tls = crate::limits::connect(([127, 0, 0, 1], port).into(), ca_pem).await?;
    let cpu = |pid: &str| {
        crate::servers::proc_cpu_seconds(pid)
            .ok_or_else(|| format!("cannot read the CPU time of process {pid}"))
    };
    let before = (cpu(&pid)?, cpu("self")?);
    let started = Instant::now();
    let got = crate::limits::receive_stream(&mut tls, bytes).await?;
    let took = started.elapsed();
    let after = (cpu(&pid)?, cpu("self")?);
    drop(tls);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .map_err(|_| "the TLS sender did not exit after the transfer".to_owned())?
        .map_err(|e| e.to_string())?;
    if got != bytes || !status.success() {
        return Err(format!(
            "TLS between two processes: read {got} of {bytes} bytes, sender {status}"
        ));
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(TwoProcess {
        mb_s: bytes as f64 / 1e6 / took.as_secs_f64(),
        sender_cpu: (after.0 - before.0) / gib,
        receiver_cpu: (after.1 - before.1) / gib,
    })
}
