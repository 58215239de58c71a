//! Running external client programs (skopeo, podman, docker, ctr) with a time limit,
//! capturing what they print, and failing with all of it when they misbehave.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: a push or pull of the small test images takes seconds; this only stops a hang.
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// What a command line looks like in messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(' ') {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

fn read_back(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut v);
    v
}

fn shorten(bytes: &[u8]) -> String {
    const MAX: usize = 12_000;
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= MAX {
        return s.into_owned();
    }
    let mut cut = s.len() - MAX;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[… {cut} bytes cut …]{}", &s[cut..])
}

/// Both outputs, for messages.
pub fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        shorten(&out.stdout),
        shorten(&out.stderr)
    )
}

/// Runs `cmd` with no stdin, its output going to anonymous files (so a child that leaves
/// a grandchild holding the pipe cannot hang us), killing it after `timeout`.
pub fn exec_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    exec_timeout_stdin(cmd, Stdio::null(), timeout)
}

/// Like [`exec_timeout`], with `stdin` as the command's standard input.
fn exec_timeout_stdin(cmd: &mut Command, stdin: Stdio, timeout: Duration) -> Output {
    let shown = describe(cmd);
    let out = tempfile::tempfile().expect("temp file for stdout");
    let err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(stdin)
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let o = Output {
                status: ExitStatus::default(),
                stdout: read_back(out),
                stderr: read_back(err),
            };
            panic!("`{shown}` did not finish within {timeout:?}\n{}", show(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Output {
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    };
    eprintln!(
        "$ {shown}\n  ({status}, {:.1}s)\n{}",
        start.elapsed().as_secs_f64(),
        indent(&show(&o))
    );
    o
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  | {l}\n")).collect()
}

/// Runs `cmd` and returns its output, whatever the exit status.
pub fn exec(cmd: &mut Command) -> Output {
    exec_timeout(cmd, TIMEOUT)
}

/// Runs `cmd`; panics with both outputs unless it exits 0.
pub fn run(cmd: &mut Command) -> Output {
    let shown = describe(cmd);
    let o = exec(cmd);
    if !o.status.success() {
        panic!("`{shown}` failed ({})\n{}", o.status, show(&o));
    }
    o
}

/// Runs `cmd`; panics with both outputs if it exits 0.
pub fn run_fails(cmd: &mut Command) -> Output {
    let shown = describe(cmd);
    let o = exec(cmd);
    if o.status.success() {
        panic!("`{shown}` was expected to fail but succeeded\n{}", show(&o));
    }
    o
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// True when `CI` (or `HOLDFAST_REQUIRE_CLIENTS`, set by tests/run) is set: missing tools
/// are then a failure, not a skip.
pub fn in_ci() -> bool {
    ["CI", "HOLDFAST_REQUIRE_CLIENTS"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")))
}

/// True when every program in `tools` is on PATH. Otherwise panics in CI, and elsewhere
/// prints a skip notice for `test` and returns false.
pub fn require(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !crate::common::have(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if in_ci() {
        panic!(
            "{test}: client program(s) {missing:?} not found on PATH, and CI is set: \
             .ci/run must install them"
        );
    }
    eprintln!("SKIP {test}: {missing:?} not installed (set CI=1 to make this a failure)");
    false
}

/// The busybox-static binary the test images carry, if any.
pub fn busybox_path() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Like [`require`] for the busybox binary.
pub fn require_busybox(test: &str) -> bool {
    if busybox_path().is_some() {
        return true;
    }
    if in_ci() {
        panic!("{test}: /bin/busybox not found and CI is set: .ci/run must install busybox-static");
    }
    eprintln!("SKIP {test}: /bin/busybox not installed");
    false
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Runs `cmd` with `input` as its standard input (e.g. a password for `--password-stdin`)
/// and returns its output, whatever the exit status. The input is not printed.
#[allow(dead_code)] // not every test binary that includes this file uses it
pub fn exec_input(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut f = tempfile::tempfile().expect("temp file for stdin");
    f.write_all(input.as_bytes()).expect("write stdin");
    f.seek(SeekFrom::Start(0)).expect("rewind stdin");
    exec_timeout_stdin(cmd, Stdio::from(f), TIMEOUT)
}

/// [`exec_input`]; panics with both outputs unless it exits 0.
#[allow(dead_code)] // not every test binary that includes this file uses it
pub fn run_input(cmd: &mut Command, input: &str) -> Output {
    let shown = describe(cmd);
    let o = exec_input(cmd, input);
    if !o.status.success() {
        panic!("`{shown}` failed ({})\n{}", o.status, show(&o));
    }
    o
}

/// [`exec_input`]; panics with both outputs if it exits 0.
#[allow(dead_code)] // not every test binary that includes this file uses it
pub fn run_fails_input(cmd: &mut Command, input: &str) -> Output {
    let shown = describe(cmd);
    let o = exec_input(cmd, input);
    if o.status.success() {
        panic!("`{shown}` was expected to fail but succeeded\n{}", show(&o));
    }
    o
}
