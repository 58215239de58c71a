//! Request-rate workloads through `wrk` (HTTP/1.1 keep-alive over TLS, C and LuaJIT, so the
//! generator is far cheaper per request than either server). A Lua script sets the headers
//! (Accept, and Authorization in the Basic variant), cycles through the request paths, and
//! prints the summary as one JSON line that the harness parses.

use std::path::Path;
use std::time::Duration;

use crate::servers::Server;

#[derive(Clone, Debug)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx answers.
    pub errors: u64,
}

fn lua_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn script(paths: &[String], headers: &[(&str, String)]) -> String {
    let mut s =
        String::from("-- written by the holdfast benchmark harness\nwrk.method = \"GET\"\n");
    for (k, v) in headers {
        s.push_str(&format!("wrk.headers[{}] = {}\n", lua_str(k), lua_str(v)));
    }
    if paths.len() > 1 {
        s.push_str("local paths = {\n");
        for p in paths {
            s.push_str(&format!("  {},\n", lua_str(p)));
        }
        // Each thread starts at a different page (`setup` runs per thread, before it
        // starts; `thread:set` writes a global of that thread's Lua state).
        s.push_str(
            "}\nlocal started = 0\n\
             setup = function(thread)\n  thread:set(\"i\", (started * 7919) % #paths)\n  started = started + 1\nend\n\
             request = function()\n  i = (i % #paths) + 1\n  return wrk.format(nil, paths[i])\nend\n",
        );
    }
    s.push_str(
        r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#,
    );
    s
}

/// Runs `wrk` against `server` for `duration` with `connections` keep-alive connections,
/// requesting `paths` round-robin (from a random start per thread).
pub async fn run(
    wrk: &Path,
    dir: &Path,
    server: &Server,
    paths: &[String],
    accept: Option<&str>,
    connections: usize,
    duration: Duration,
) -> Result<WrkResult, String> {
    assert!(!paths.is_empty());
    let mut headers = Vec::new();
    if let Some(a) = accept {
        headers.push(("Accept", a.to_owned()));
    }
    if let Some(h) = &server.auth_header {
        headers.push(("Authorization", h.clone()));
    }
    let script_path = dir.join(format!("wrk-{}.lua", server.kind));
    std::fs::write(&script_path, script(paths, &headers)).map_err(|e| e.to_string())?;
    let threads = connections.clamp(1, 2);
    let secs = duration.as_secs().max(1);
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.arg("-t")
        .arg(threads.to_string())
        .arg("-c")
        .arg(connections.to_string())
        .arg("-d")
        .arg(format!("{secs}s"))
        .arg("--timeout")
        .arg("30s")
        .arg("-s")
        .arg(&script_path)
        .arg(server.url(&paths[0]))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(secs + 60), cmd.output())
        .await
        .map_err(|_| format!("wrk against {} did not finish", server.kind))?
        .map_err(|e| format!("run {}: {e}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("wrk failed ({}): {stdout}{stderr}", out.status));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .ok_or_else(|| format!("wrk printed no summary: {stdout}{stderr}"))?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("wrk summary {line:?}: {e}"))?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let requests = num("requests");
    let duration_s = num("duration_us") / 1e6;
    let errors = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|k| num(k))
        .sum::<f64>();
    if !(requests > 0.0 && duration_s > 0.0 && errors.is_finite()) {
        return Err(format!(
            "wrk summary is not usable: {line}\n{stdout}{stderr}"
        ));
    }
    Ok(WrkResult {
        requests: requests as u64,
        rps: requests / duration_s,
        p50_ms: num("p50_us") / 1e3,
        p99_ms: num("p99_us") / 1e3,
        errors: errors as u64,
    })
}
