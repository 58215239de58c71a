//! The appliance's systemd units and Debian package (`systemd/`).
//!
//! Always: `systemd-analyze verify` says nothing about the units, the service's hardening
//! exposure (`systemd-analyze security --offline=true`) is at most 1.5, the units carry the
//! settings the appliance relies on, and the packaged config, system user and data directory
//! agree with them.
//!
//! Only with `HOLDFAST_TEST_DEB=1` or `CI` set, because it changes the machine: `cargo deb`
//! builds the package, `dpkg -i` installs it, the installed files are checked, a throwaway
//! systemd (PID 1 of private namespaces, over an overlay of `/`) boots the installed units
//! and serves HTTPS on port 443 through the socket unit, then `dpkg -r` and `dpkg -P` remove
//! it all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MAX_EXPOSURE: f64 = 1.5;
const EXEC_START: &str = "ExecStart=/usr/bin/holdfast serve --config /etc/holdfast/holdfast.toml";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_file(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The unit's settings, one `Key=value` per line, comments and section headers left out.
fn settings(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// CI and `tests/run` want every tool present; elsewhere a missing one skips.
fn tools_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("HOLDFAST_REQUIRE_CLIENTS").is_some()
}

fn have_systemd_analyze(test: &str) -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !tools_required(),
            "systemd-analyze is missing: apt-get install systemd"
        );
        println!("SKIP {test}: systemd-analyze is missing (apt-get install systemd)");
    }
    found
}

/// Copies of both units in `dir`, the service's `ExecStart=` pointing at the binary cargo
/// built: `verify` insists that the command exists.
fn units_for_analysis(dir: &Path) -> (PathBuf, PathBuf) {
    let service = read("systemd/holdfast.service");
    assert!(
        settings(&service).iter().any(|l| l == EXEC_START),
        "holdfast.service must have `{EXEC_START}`"
    );
    let built = format!(
        "ExecStart={} serve --config /etc/holdfast/holdfast.toml",
        env!("CARGO_BIN_EXE_holdfast")
    );
    let service_path = dir.join("holdfast.service");
    let socket_path = dir.join("holdfast.socket");
    fs::write(&service_path, service.replace(EXEC_START, &built)).unwrap();
    fs::write(&socket_path, read("systemd/holdfast.socket")).unwrap();
    (service_path, socket_path)
}

fn assert_verify_silent(service: &Path, socket: &Path) {
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(service)
        .arg(socket));
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {} {} ({}):\nstdout:\n{}\nstderr:\n{}",
        service.display(),
        socket.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `systemd-analyze security --offline=true UNIT`'s overall exposure (0.0 to 10.0).
fn exposure(unit: &Path) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit));
    let stdout = text(&out.stdout);
    let marker = "Overall exposure level for ";
    let line = stdout
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure from systemd-analyze security ({}):\n{stdout}\n{}",
                out.status,
                text(&out.stderr)
            )
        });
    let after = &line[line.find(marker).unwrap() + marker.len()..];
    let figure = after
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    let value: f64 = figure
        .parse()
        .unwrap_or_else(|e| panic!("cannot read the exposure {figure:?} in {line:?}: {e}"));
    if value > MAX_EXPOSURE {
        println!("{stdout}");
    }
    value
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have_systemd_analyze("units_pass_systemd_analyze_verify") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, socket) = units_for_analysis(dir.path());
    assert_verify_silent(&service, &socket);
}

#[test]
fn service_hardening_exposure_is_at_most_1_5() {
    if !have_systemd_analyze("service_hardening_exposure_is_at_most_1_5") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = units_for_analysis(dir.path());
    let value = exposure(&service);
    println!("systemd-analyze security --offline=true holdfast.service: exposure {value:.1}");
    assert!(
        value <= MAX_EXPOSURE,
        "holdfast.service exposure {value} is above {MAX_EXPOSURE}"
    );
}

#[test]
fn units_carry_the_settings_the_appliance_relies_on() {
    let service = settings(&read("systemd/holdfast.service"));
    for wanted in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        EXEC_START,
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=holdfast",
        "Group=holdfast",
        "StateDirectory=holdfast",
        "StateDirectoryMode=0700",
        "ConfigurationDirectory=holdfast",
        "LoadCredential=tls.crt:holdfast.tls.crt",
        "LoadCredential=tls.key:holdfast.tls.key",
        "LoadCredential=token.key:holdfast.token.key",
        "UMask=0077",
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "PrivateUsers=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "MemoryDenyWriteExecute=yes",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            service.iter().any(|l| l == wanted),
            "holdfast.service lacks `{wanted}`"
        );
    }
    // The service works with and without the socket unit: nothing may demand it.
    for line in &service {
        let key = line.split('=').next().unwrap_or_default();
        assert!(
            !(["Requires", "BindsTo", "Requisite", "PartOf"].contains(&key)
                && line.contains("holdfast.socket")),
            "holdfast.service must not depend on the socket: `{line}`"
        );
    }
    // Credential names are relative: systemd looks them up in /etc/credstore/ and friends,
    // and a missing one is not an error (the generated local CA needs none). An absolute
    // path would stop the service from starting when the file is absent.
    for line in service.iter().filter(|l| l.starts_with("LoadCredential=")) {
        let source = line.split_once(':').map(|(_, s)| s).unwrap_or_default();
        assert!(
            !source.starts_with('/'),
            "`{line}`: a missing file would fail the start"
        );
    }

    let socket = settings(&read("systemd/holdfast.socket"));
    for wanted in [
        "ListenStream=443",
        "Accept=no",
        "NoDelay=true",
        "WantedBy=sockets.target",
    ] {
        assert!(
            socket.iter().any(|l| l == wanted),
            "holdfast.socket lacks `{wanted}`"
        );
    }
}

#[test]
fn packaged_config_user_and_data_directory_agree_with_the_units() {
    let config_path = repo_file("systemd/holdfast.toml");
    let out = run(Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["check-config", "--config"])
        .arg(&config_path));
    assert!(
        out.status.success(),
        "holdfast check-config {}: {}{}",
        config_path.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let config: toml::Table = read("systemd/holdfast.toml").parse().unwrap();
    assert_eq!(
        config["storage"]["path"].as_str(),
        Some("/var/lib/holdfast"),
        "the packaged config must keep data in the StateDirectory"
    );
    let listen: Vec<&str> = config["server"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        listen,
        ["127.0.0.1:5000"],
        "the packaged config listens on loopback only; the socket unit opens 443"
    );

    let sysusers = settings(&read("systemd/holdfast.sysusers"));
    assert_eq!(
        sysusers,
        ["u holdfast - \"holdfast container registry\" /var/lib/holdfast"]
    );
    let tmpfiles = settings(&read("systemd/holdfast.tmpfile"));
    assert_eq!(tmpfiles, ["d /var/lib/holdfast 0700 holdfast holdfast -"]);

    let postrm = read("systemd/deb/postrm");
    assert!(postrm.starts_with("#!/bin/sh\n") && postrm.contains("\n#DEBHELPER#\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(repo_file("systemd/deb/postrm"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "systemd/deb/postrm must be executable");
}

// ---- the Debian package, end to end (changes the machine: opt-in) ----

fn deb_test_enabled() -> bool {
    std::env::var_os("CI").is_some()
        || std::env::var("HOLDFAST_TEST_DEB").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn package_state() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "holdfast"]));
    text(&out.stdout)
}

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if !package_state().is_empty() {
            let _ = Command::new("dpkg").args(["-P", "holdfast"]).output();
        }
    }
}

#[test]
fn deb_builds_installs_boots_and_removes() {
    if !deb_test_enabled() {
        println!(
            "SKIP deb_builds_installs_boots_and_removes: installs a package on this machine; \
             set HOLDFAST_TEST_DEB=1 (CI does it always)"
        );
        return;
    }
    assert!(
        have_systemd_analyze("deb_builds_installs_boots_and_removes"),
        "systemd-analyze is missing: apt-get install systemd"
    );
    let uid = text(&run(Command::new("id").arg("-u")).stdout);
    assert_eq!(uid.trim(), "0", "installing the .deb needs root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is missing: cargo install cargo-deb --locked (tests/run does it)"
    );
    assert!(
        read("Cargo.toml").contains("[package.metadata.deb]"),
        "Cargo.toml has no [package.metadata.deb] section (see systemd/README.md)"
    );

    // Build: one release build, then the package.
    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    must(
        Command::new(&cargo)
            .args(["deb", "--output"])
            .arg(out_dir.path())
            .args(["--", "--locked"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    println!("cargo deb: {:.0} s", started.elapsed().as_secs_f64());
    let deb = fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("cargo deb made no .deb");
    let contents = must(Command::new("dpkg-deb").arg("-c").arg(&deb));
    println!("{}:\n{contents}", deb.display());

    // A leftover from an earlier, interrupted run would hide what this one installs.
    if !package_state().is_empty() {
        must(Command::new("dpkg").args(["-P", "holdfast"]));
    }
    let _guard = Installed;
    must(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(package_state(), "install ok installed");

    // Files where they belong, as shipped.
    let version = must(Command::new("/usr/bin/holdfast").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("holdfast {}", env!("CARGO_PKG_VERSION"))
    );
    for (installed, source) in [
        (
            "/lib/systemd/system/holdfast.service",
            "systemd/holdfast.service",
        ),
        (
            "/lib/systemd/system/holdfast.socket",
            "systemd/holdfast.socket",
        ),
        (
            "/usr/lib/sysusers.d/holdfast.conf",
            "systemd/holdfast.sysusers",
        ),
        (
            "/usr/lib/tmpfiles.d/holdfast.conf",
            "systemd/holdfast.tmpfile",
        ),
        ("/etc/holdfast/holdfast.toml", "systemd/holdfast.toml"),
        (
            "/usr/share/doc/holdfast/holdfast.toml.example",
            "etc/holdfast.toml",
        ),
        ("/usr/share/doc/holdfast/systemd.md", "systemd/README.md"),
        ("/usr/share/doc/holdfast/certs.md", "certs/README.md"),
    ] {
        let got = fs::read_to_string(installed)
            .unwrap_or_else(|e| panic!("{installed} after dpkg -i: {e}"));
        assert_eq!(got, read(source), "{installed} differs from {source}");
    }
    let conffiles = must(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "holdfast"]));
    assert!(
        conffiles.contains("/etc/holdfast/holdfast.toml "),
        "the config is not a conffile: {conffiles:?}"
    );
    let passwd = must(Command::new("getent").args(["passwd", "holdfast"]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/holdfast", "{passwd}");
    assert!(fields[6].ends_with("nologin"), "{passwd}");
    must(Command::new("/usr/bin/holdfast").args([
        "check-config",
        "--config",
        "/etc/holdfast/holdfast.toml",
    ]));
    assert_verify_silent(
        Path::new("/lib/systemd/system/holdfast.service"),
        Path::new("/lib/systemd/system/holdfast.socket"),
    );
    let value = exposure(Path::new("/lib/systemd/system/holdfast.service"));
    println!("installed holdfast.service: exposure {value:.1}");
    assert!(value <= MAX_EXPOSURE);

    boot_installed_units();

    // Remove keeps the conffile; purge takes it too.
    must(Command::new("dpkg").args(["-r", "holdfast"]));
    assert_eq!(package_state(), "deinstall ok config-files");
    for gone in [
        "/usr/bin/holdfast",
        "/lib/systemd/system/holdfast.service",
        "/lib/systemd/system/holdfast.socket",
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after dpkg -r"
        );
    }
    assert!(Path::new("/etc/holdfast/holdfast.toml").exists());
    must(Command::new("dpkg").args(["-P", "holdfast"]));
    assert!(!Path::new("/etc/holdfast/holdfast.toml").exists());
    assert!(package_state().is_empty() || package_state().starts_with("unknown"));
}

// ---- a throwaway systemd that boots the installed units ----

/// Run by `unshare` as PID 1-to-be of new pid/mount/net/uts/ipc/cgroup namespaces: an overlay
/// of `/` on a tmpfs (nothing it writes reaches the disk), fresh /proc, /sys, /run, /tmp,
/// mounts made shared as a container manager would (credentials need it), then systemd
/// booting a target that wants only holdfast's units.
const BOOT_SCRIPT: &str = r#"set -e
B=$1
mount -t tmpfs tmpfs "$B"
mkdir -p "$B/up" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$B/up,workdir=$B/work" "$B/root"
R=$B/root
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
printf '[Unit]\nDescription=holdfast boot test\nWants=holdfast.socket holdfast.service\n' \
  > "$R/etc/systemd/system/holdfast-boot-test.target"
cd "$R"
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
mount --make-rshared /
exec env container=holdfast-test /lib/systemd/systemd --system --unit=holdfast-boot-test.target
"#;

/// The booted systemd; killing PID 1 of the namespace ends everything in it, and the
/// cgroup it made for itself is removed.
struct Boot {
    unshare: Child,
    cgroup: PathBuf,
    pid: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Boot {
    fn start() -> Boot {
        // A cgroup of its own, so systemd's tree lands below it and can be removed.
        let v2 = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/unified")
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let cgroup = v2.join(format!("holdfast-boot-test.{}", std::process::id()));
        fs::create_dir_all(&cgroup).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cgroup_procs = cgroup.join("cgroup.procs");
        let script = format!(
            "echo $$ > {} && exec unshare --pid --fork --kill-child --mount --net --uts --ipc \
             --cgroup --propagation private bash -c '{}' boot {}",
            cgroup_procs.display(),
            BOOT_SCRIPT.replace('\'', r"'\''"),
            dir.path().display()
        );
        let unshare = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting unshare");
        let mut boot = Boot {
            unshare,
            cgroup,
            pid: None,
            _dir: dir,
        };
        // systemd is the child unshare forks.
        let children = format!("/proc/{0}/task/{0}/children", boot.unshare.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while boot.pid.is_none() {
            assert!(Instant::now() < deadline, "systemd did not start");
            if let Some(pid) = fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
            {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    boot.pid = Some(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        boot
    }

    /// A command run inside the booted system's namespaces.
    fn exec(&self, args: &[&str]) -> Output {
        let pid = self.pid.unwrap().to_string();
        run(Command::new("nsenter")
            .args(["-t", &pid, "-m", "-p", "-n", "-u", "-i", "-C", "--"])
            .args(args))
    }

    fn show(&self, unit: &str, property: &str) -> String {
        let out = self.exec(&["systemctl", "show", unit, "-p", property, "--value"]);
        text(&out.stdout).trim().to_owned()
    }

    fn journal(&self) -> String {
        let out = self.exec(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "holdfast.service",
            "-u",
            "holdfast.socket",
        ]);
        text(&out.stdout)
    }

    fn wait_for(&self, what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; holdfast.service {} ({}), journal:\n{}",
                    self.show("holdfast.service", "ActiveState"),
                    self.show("holdfast.service", "StatusText"),
                    self.journal()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The HTTP status of `GET https://localhost/v2/` (port 443: the socket unit), trusting
    /// the CA the service generated.
    fn get_v2(&self) -> String {
        let out = self.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "/var/lib/holdfast/tls/ca.crt",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://localhost/v2/",
        ]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // Empty now; deepest first.
        let mut dirs = vec![];
        let mut stack = vec![self.cgroup.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Boots the installed units under a real systemd: the hardened service must start
/// (`READY=1` with its status line), serve HTTPS on 443 through the socket unit with no
/// capability, keep its data in /var/lib/holdfast, reload on `systemctl reload`, stop
/// cleanly, and be started again by a connection to the socket.
fn boot_installed_units() {
    for tool in ["unshare", "nsenter", "curl"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is missing (util-linux, curl)");
    }
    let boot = Boot::start();
    boot.wait_for("holdfast.service to be active", || {
        boot.show("holdfast.service", "ActiveState") == "active"
    });
    let status = boot.show("holdfast.service", "StatusText");
    assert!(
        status.contains(":443"),
        "status {status:?}: the socket unit's port 443 should be among the listeners"
    );
    assert_eq!(boot.show("holdfast.socket", "ActiveState"), "active");
    assert_eq!(boot.get_v2(), "401", "journal:\n{}", boot.journal());

    let pid = boot.show("holdfast.service", "MainPID");
    let proc_status = text(&boot.exec(&["cat", &format!("/proc/{pid}/status")]).stdout);
    for (key, want) in [
        ("CapEff:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
        ("Seccomp:", "2"),
    ] {
        let line = proc_status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default();
        assert!(line.ends_with(want), "{key} of the service: {line:?}");
    }
    let owner = text(
        &boot
            .exec(&["stat", "-c", "%U %a", "/var/lib/holdfast/users.toml"])
            .stdout,
    );
    assert_eq!(owner.trim(), "holdfast 600");

    let out = boot.exec(&["systemctl", "reload", "holdfast.service"]);
    assert!(out.status.success(), "reload: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(boot.show("holdfast.service", "ActiveState"), "active");
    assert_eq!(
        boot.show("holdfast.service", "MainPID"),
        pid,
        "reload restarted it"
    );

    let out = boot.exec(&["systemctl", "stop", "holdfast.service"]);
    assert!(out.status.success(), "stop: {}", text(&out.stderr));
    assert_eq!(boot.show("holdfast.service", "ActiveState"), "inactive");
    assert_eq!(boot.show("holdfast.service", "Result"), "success");
    // A connection to 443 starts it again (socket activation).
    assert_eq!(boot.get_v2(), "401", "journal:\n{}", boot.journal());
    assert_eq!(boot.show("holdfast.service", "ActiveState"), "active");
    assert_eq!(boot.show("holdfast.service", "NRestarts"), "0");
    println!("booted holdfast.service: {status}");
}
