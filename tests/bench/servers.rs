//! The two servers under comparison, started on loopback with equivalent settings: TLS with
//! the same certificate and key (the one holdfast generates on its first run), filesystem
//! storage in sibling folders of one temporary directory (same disk), logging at `info` with
//! an access-log line per request into a file, and the same authentication variant.
//!
//! A `Server` is a guard: dropping it kills the process. Processes are also started under
//! `setpriv --pdeathsig KILL` when available, so they die with the harness even if it is
//! killed outright.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which implementation a server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Holdfast,
    Distribution,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Holdfast => "holdfast",
            Kind::Distribution => "distribution",
        }
    }

    /// Index into per-server sample arrays.
    pub fn index(self) -> usize {
        match self {
            Kind::Holdfast => 0,
            Kind::Distribution => 1,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The authentication variant every workload runs under.
#[derive(Clone, Debug)]
pub enum Auth {
    /// No authentication on either server.
    None,
    /// Every request carries `Authorization: Basic`; both servers check it against one user.
    Basic { user: String, password: String },
}

impl Auth {
    /// The variants chosen by `HOLDFAST_BENCH_AUTH`: `both` (the default: no auth, then
    /// Basic auth), `none` or `basic`.
    pub fn variants_from_env() -> Result<Vec<Auth>, String> {
        let basic = || Auth::Basic {
            user: "bench".to_owned(),
            password: "bench-password-0123456789".to_owned(),
        };
        match std::env::var("HOLDFAST_BENCH_AUTH").as_deref() {
            Ok("both") | Ok("") | Err(_) => Ok(vec![Auth::None, basic()]),
            Ok("none") => Ok(vec![Auth::None]),
            Ok("basic") => Ok(vec![basic()]),
            Ok(other) => Err(format!(
                "HOLDFAST_BENCH_AUTH={other:?}: expected `both`, `none` or `basic`"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Auth::None => "no auth",
            Auth::Basic { .. } => "Basic auth",
        }
    }

    /// The `Authorization` header value every request carries, if any.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => {
                use base64::Engine as _;
                let raw = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
        }
    }
}

/// External programs the harness drives, found (never installed) at start.
#[derive(Clone, Debug)]
pub struct Tools {
    pub distribution: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
    pub setpriv: bool,
}

/// Where distribution is looked for: `HOLDFAST_BENCH_DISTRIBUTION` or Debian's path.
pub fn distribution_path() -> PathBuf {
    std::env::var_os("HOLDFAST_BENCH_DISTRIBUTION")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"))
}

impl Tools {
    pub fn find() -> Tools {
        let distribution = distribution_path();
        let distribution = distribution.is_file().then_some(distribution);
        let wrk = match std::env::var_os("HOLDFAST_BENCH_WRK") {
            Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
            None => which("wrk"),
        };
        let setpriv = Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("pdeathsig"))
            .unwrap_or(false);
        Tools {
            distribution,
            wrk,
            setpriv,
        }
    }
}

/// The full path of `cmd` on PATH.
pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// First line of `<program> <args>`'s output, for the report.
pub fn version_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(e) => format!("(cannot run {}: {e})", program.display()),
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().unwrap().port()
}

/// One registry process and everything it owns on disk.
pub struct Server {
    pub kind: Kind,
    pub base: String,
    /// The storage root (as configured).
    pub root: PathBuf,
    /// Where repository folders live (`<name>/` under it).
    pub repos_dir: PathBuf,
    pub log_path: PathBuf,
    /// `Authorization` value for every request (Basic variant).
    pub auth_header: Option<String>,
    program: PathBuf,
    args: Vec<String>,
    /// Where the CA that signs the server certificate is (holdfast writes it on first start).
    ca_path: PathBuf,
    setpriv: bool,
    child: Option<Child>,
}

impl Server {
    /// holdfast with `[tls] enabled` and a generated certificate, storage under `dir/data`.
    pub fn holdfast(
        dir: &Path,
        binary: &Path,
        auth: &Auth,
        setpriv: bool,
    ) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_port();
        let root = dir.join("data");
        let config_path = dir.join("holdfast.toml");
        let auth_toml = match auth {
            Auth::None => "[auth]\nmode = \"none\"\n".to_owned(),
            Auth::Basic { user, password } => holdfast_basic_auth_config(dir, user, password)?,
        };
        let config = format!(
            "# written by the benchmark harness\n\
             [server]\nlisten = [\"127.0.0.1:{port}\"]\n\n\
             [tls]\nenabled = true\n\n\
             [storage]\npath = \"{}\"\n\n\
             [log]\nlevel = \"info\"\n\n\
             {auth_toml}",
            root.display()
        );
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        Ok(Server {
            kind: Kind::Holdfast,
            base: format!("https://127.0.0.1:{port}"),
            repos_dir: root.join("repositories"),
            ca_path: root.join("tls").join("ca.crt"),
            root,
            log_path: dir.join("holdfast.log"),
            auth_header: auth.header(),
            program: binary.to_owned(),
            args: vec![
                "serve".into(),
                "--config".into(),
                config_path.display().to_string(),
            ],
            setpriv,
            child: None,
        })
    }

    /// The certificate files holdfast generated, for the other server to use.
    pub fn generated_tls(&self) -> (PathBuf, PathBuf, PathBuf) {
        let tls = self.root.join("tls");
        (
            tls.join("server.crt"),
            tls.join("server.key"),
            tls.join("ca.crt"),
        )
    }

    /// CNCF distribution 2.8 with the same certificate, filesystem storage under
    /// `dir/data`, the in-memory blob descriptor cache (as in Debian's default config).
    pub fn distribution(
        dir: &Path,
        binary: &Path,
        tls: (PathBuf, PathBuf, PathBuf),
        auth: &Auth,
        setpriv: bool,
    ) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_port();
        let root = dir.join("data");
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let config_path = dir.join("config.yml");
        let (cert, key, ca) = tls;
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Basic { user, password } => distribution_basic_auth_config(dir, user, password)?,
        };
        let config = format!(
            "# written by the benchmark harness\n\
             version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\n\
             http:\n  addr: \"127.0.0.1:{port}\"\n  secret: holdfast-bench-secret\n  \
             headers:\n    X-Content-Type-Options: [nosniff]\n  \
             tls:\n    certificate: \"{}\"\n    key: \"{}\"\n\
             health:\n  storagedriver:\n    enabled: false\n\
             {auth_yaml}",
            root.display(),
            cert.display(),
            key.display(),
        );
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        Ok(Server {
            kind: Kind::Distribution,
            base: format!("https://127.0.0.1:{port}"),
            repos_dir: root.join("docker/registry/v2/repositories"),
            root,
            log_path: dir.join("distribution.log"),
            auth_header: auth.header(),
            program: binary.to_owned(),
            args: vec!["serve".into(), config_path.display().to_string()],
            ca_path: ca,
            setpriv,
            child: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_path)
            .unwrap_or_else(|e| panic!("read CA {}: {e}", self.ca_path.display()))
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Starts the process and waits until `GET /v2/` answers 200 over TLS (a new connection
    /// per probe, every 2 ms). Returns the time from spawning to that answer.
    ///
    /// Must be called from the thread that runs the benchmark (the main thread): the
    /// process's death signal is tied to the thread that spawned it.
    pub async fn start(&mut self) -> Result<Duration, String> {
        assert!(self.child.is_none(), "{} already running", self.kind);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open {}: {e}", self.log_path.display()))?;
        let mut cmd = if self.setpriv {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.program.display()))?;
        self.child = Some(child);
        let deadline = started + Duration::from_secs(60);
        let mut client: Option<reqwest::Client> = None;
        let url = self.url("/v2/");
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "{} exited during start-up ({status}); log:\n{}",
                    self.kind,
                    self.log_tail()
                ));
            }
            if client.is_none() {
                // The CA appears on holdfast's first start; a half-written file fails to parse
                // and is simply retried.
                if let Ok(pem) = std::fs::read(&self.ca_path) {
                    client = client_builder_for(&pem, self.auth_header.as_deref())
                        .pool_max_idle_per_host(0)
                        .timeout(Duration::from_secs(2))
                        .build()
                        .ok();
                }
            }
            if let Some(c) = &client {
                if let Ok(r) = c.get(&url).send().await {
                    if r.status().as_u16() == 200 {
                        let took = started.elapsed();
                        let _ = r.bytes().await;
                        return Ok(took);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer GET /v2/ with 200 within 60 s; log:\n{}",
                    self.kind,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Removes a stored blob's bytes behind the server's back (disk hygiene between rounds;
    /// the blob is never asked for again). Returns whether anything was removed.
    pub fn forget_blob(&self, digest: &str) -> bool {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return false;
        };
        match self.kind {
            Kind::Holdfast => {
                let p = self.root.join("blobs/sha256").join(&hex[..2]).join(hex);
                std::fs::remove_file(p).is_ok()
            }
            Kind::Distribution => {
                let p = self
                    .root
                    .join("docker/registry/v2/blobs/sha256")
                    .join(&hex[..2])
                    .join(hex);
                std::fs::remove_dir_all(p).is_ok()
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reqwest client builder trusting only `ca_pem`, with `Authorization` on every request
/// when given.
pub fn client_builder_for(ca_pem: &[u8], auth_header: Option<&str>) -> reqwest::ClientBuilder {
    // reqwest uses rustls' process-wide provider (ring, as holdfast).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10));
    if let Ok(cert) = reqwest::Certificate::from_pem(ca_pem) {
        b = b.tls_certs_only([cert]);
    }
    if let Some(h) = auth_header {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(h).expect("Authorization header value"),
        );
        b = b.default_headers(headers);
    }
    b
}

/// holdfast's `[auth]` section for the Basic-auth variant: the settings distribution gets
/// (one user in a bcrypt htpasswd file of cost 5) plus the `[[access]]` rule that lets that
/// user do everything, as distribution's htpasswd auth does for any user it knows. holdfast
/// remembers a successful check for `cache_seconds` (its default, 60); distribution checks
/// bcrypt on every request.
pub fn holdfast_basic_auth_config(
    dir: &Path,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let path = write_htpasswd(dir, user, password)?;
    Ok(format!(
        "[auth]\nmode = \"basic\"\nhtpasswd_files = [\"{}\"]\n\n\
         [[access]]\nrepository = \"*\"\nall_authenticated = [\"pull\", \"push\", \"delete\"]\n",
        path.display()
    ))
}

/// Writes `dir/htpasswd` with one bcrypt line (cost 5, as `htpasswd -B` writes by default).
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> Result<PathBuf, String> {
    let hash = bcrypt::hash(password, 5).map_err(|e| e.to_string())?;
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
    Ok(path)
}

/// distribution's `auth.htpasswd` section and its htpasswd file.
fn distribution_basic_auth_config(
    dir: &Path,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let path = write_htpasswd(dir, user, password)?;
    Ok(format!(
        "auth:\n  htpasswd:\n    realm: holdfast-bench\n    path: \"{}\"\n",
        path.display()
    ))
}

/// `VmRSS`/`VmHWM` etc. of a process, in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time (user + system, all threads) a process has used so far, in seconds; `"self"`
/// for the harness itself. Kernel accounting in clock ticks (10 ms here), so meaningful over
/// transfers of a second or so, not single requests.
pub fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces: count fields after its `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS. Needs write access to
/// `/proc/<pid>/clear_refs` (same user or root).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
