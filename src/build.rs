//! Build script: shapes the release binary's layout for a small resident set.
//!
//! - Start-up functions first. The kernel maps program text in 64 KiB "fault-around"
//!   windows, so the ~1.7 MiB of code that start-up and a first request run, scattered over
//!   the 9.5 MiB text, kept 6.7 MiB of it resident in an idle server. `src/link/startup.ld`
//!   (made by `tests/tools/startup-order`: callgrind of a start and `GET /v2/`) lists those
//!   functions in an LLD linker script that places them at the front of `.text`. A name
//!   that a build no longer has matches nothing: a stale list costs memory, never
//!   correctness.
//! - Packed relative relocations (DT_RELR): the loader reads them all at every start.

use std::env;
use std::process::Command;

const ORDER_FILE: &str = "src/link/startup.ld";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=HOLDFAST_LINK_ORDER");
    // Debug builds have other symbol names and nobody measures their memory.
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if let Some(reason) = skip_reason() {
        println!(
            "cargo:warning=release layout (start-up order, packed relocations) is off: {reason}"
        );
        return;
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg-bins=-Wl,--script={manifest_dir}/{ORDER_FILE}");
    // Relative relocations packed as DT_RELR (glibc 2.36+): the dynamic loader reads all of
    // them at every start, 343 KiB as RELA entries, a few KiB packed.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}

/// Why this release build links without the layout, if it does. The script (with `INSERT`)
/// and `-z pack-relative-relocs` are checked with the LLD that Rust bundles and links x86_64
/// Linux binaries with from 1.90 on; another linker is not assumed to take them.
fn skip_reason() -> Option<String> {
    if env::var("HOLDFAST_LINK_ORDER").as_deref() == Ok("0") {
        return Some("HOLDFAST_LINK_ORDER=0".into());
    }
    let target = env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Some(format!("target {target} may not link with LLD"));
    }
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if rustflags.contains("linker")
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return Some("the build names its own linker".into());
    }
    match rustc_minor_version() {
        Some(minor) if minor >= 90 => None,
        Some(minor) => Some(format!(
            "rustc 1.{minor} links with the system linker, not LLD"
        )),
        None => Some("cannot read the rustc version".into()),
    }
}

/// The minor version of the compiler cargo builds with (`rustc -V`: "rustc 1.95.0 (...)").
fn rustc_minor_version() -> Option<u32> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
