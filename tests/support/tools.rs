//! The client programs' surroundings: podman with a private store, a private dockerd and
//! containerd (started per test, stopped on drop), and the server's CA where clients
//! without a cert-dir flag look for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestServer;
use crate::http::tail;
use crate::proc::{self, p, run, stdout};

/// The server's CA put where a client without a cert-dir flag looks for it
/// (`/etc/docker/certs.d/HOST/`, `/etc/containers/certs.d/HOST/`), removed on drop. The
/// folder is named after this test's own `127.0.0.1:PORT`, so tests do not collide.
pub struct SystemCa(PathBuf);

impl SystemCa {
    pub fn install(root: &str, server: &TestServer) -> SystemCa {
        let dir = Path::new(root).join(&server.host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(server.ca_path(), dir.join("ca.crt")).unwrap();
        SystemCa(dir)
    }
}

impl Drop for SystemCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// podman as root with a private store, so tests neither see nor touch the machine's images.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registries.conf"), "").unwrap();
        std::fs::write(dir.path().join("auth.json"), "{}").unwrap();
        Podman { dir }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"))
            .args([
                "--root",
                p(&d.join("root")),
                "--runroot",
                p(&d.join("runroot")),
                "--tmpdir",
                p(&d.join("tmp")),
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args);
        c
    }

    pub fn inspect(&self, image: &str, format: &str) -> String {
        let o = run(&mut self.cmd(&["image", "inspect", "--format", format, image]));
        stdout(&o).trim().to_string()
    }
}

/// A temporary folder whose path is all lowercase: podman names an image it takes from
/// `oci:PATH:TAG` after PATH, and image names must be lowercase.
pub fn lowercase_tempdir() -> tempfile::TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let prefix = format!(
        "hfp{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(0)
        .tempdir_in("/tmp")
        .expect("lowercase temp dir")
}

/// A dockerd with private data, exec root, socket and config, stopped on drop. It also
/// puts the test server's CA into `/etc/docker/certs.d/HOST/` (docker has no flag to move
/// that folder) and removes it again.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    _ca: SystemCa,
}

pub fn docker_cli() -> &'static str {
    // Debian's CLI matches Debian's daemon; some machines have a newer one earlier on PATH.
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

impl Dockerd {
    pub fn start(server: &TestServer) -> Dockerd {
        // Short paths: the socket path must fit in sun_path (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("hfd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        std::fs::create_dir_all(d.join("cfg")).unwrap();
        let ca = SystemCa::install("/etc/docker/certs.d", server);
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args([
                "--config-file",
                p(&d.join("daemon.json")),
                "--data-root",
                p(&d.join("data")),
                "--exec-root",
                p(&d.join("x")),
                "--pidfile",
                p(&d.join("docker.pid")),
                "--host",
                &format!("unix://{}", p(&d.join("docker.sock"))),
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let mut dk = Dockerd {
            dir,
            child: Some(child),
            _ca: ca,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = dk.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited early ({status}):\n{}", dk.log());
            }
            let ok = dk
                .cmd(&["version", "--format", "{{.Server.Version}}"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                panic!("dockerd did not answer within 60s:\n{}", dk.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        dk
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(docker_cli());
        c.env("DOCKER_CONFIG", d.join("cfg"))
            .arg("--host")
            .arg(format!("unix://{}", p(&d.join("docker.sock"))))
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        let mut c = self.cmd(args);
        let shown = proc::describe(&c);
        let o = proc::exec(&mut c);
        if !o.status.success() {
            panic!(
                "`{shown}` failed ({})\n{}\n--- dockerd log (tail) ---\n{}",
                o.status,
                proc::show(&o),
                tail(&self.log(), 60)
            );
        }
        stdout(&o)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets dockerd stop the containerd it started.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A containerd with private root, state and socket, stopped on drop.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("hfc")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        // Only what image push/pull needs; no CRI, no snapshotters that need mounts we
        // may lack (the native one copies).
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\naddress = \"{sock}\"\n[ttrpc]\naddress = \"{sock}.ttrpc\"\n\
                 [debug]\naddress = \"\"\n",
                root = p(&d.join("root")),
                state = p(&d.join("state")),
                sock = p(&d.join("c.sock")),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited early ({status}):\n{}", c.log());
            }
            let ok = c
                .cmd(&["version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return c;
            }
            if Instant::now() > deadline {
                panic!("containerd did not answer within 60s:\n{}", c.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(["--namespace", "holdfast"])
            .args(args);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
