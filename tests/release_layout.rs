//! The release binary's layout (`src/build.rs`): the functions that start-up and the first
//! requests run (`src/link/startup.ld`) sit together at the front of the program text, and
//! relative relocations are packed (DT_RELR), so an idle server keeps little of the binary
//! resident.
//!
//! Only with `HOLDFAST_TEST_RELEASE=1` or `CI` set: it builds the release binary (minutes on
//! two cores; `tests/run` shares that build with the Debian package test).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn enabled() -> bool {
    std::env::var_os("HOLDFAST_TEST_RELEASE").is_some() || std::env::var_os("CI").is_some()
}

/// One section header of an ELF64 little-endian file.
struct Section {
    name: String,
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn c_str(b: &[u8], at: usize) -> String {
    let end = b[at..]
        .iter()
        .position(|&c| c == 0)
        .map_or(b.len(), |n| at + n);
    String::from_utf8_lossy(&b[at..end]).into_owned()
}

fn sections(elf: &[u8]) -> Vec<Section> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let shoff = u64_at(elf, 0x28) as usize;
    let shentsize = u16_at(elf, 0x3a) as usize;
    let shnum = u16_at(elf, 0x3c) as usize;
    let shstrndx = u16_at(elf, 0x3e) as usize;
    let raw: Vec<(u32, u32, u64, u64, u64, u32)> = (0..shnum)
        .map(|i| {
            let h = shoff + i * shentsize;
            (
                u32_at(elf, h),
                u32_at(elf, h + 4),
                u64_at(elf, h + 0x10),
                u64_at(elf, h + 0x18),
                u64_at(elf, h + 0x20),
                u32_at(elf, h + 0x28),
            )
        })
        .collect();
    let names_at = raw[shstrndx].3 as usize;
    raw.into_iter()
        .map(|(name, kind, addr, offset, size, link)| Section {
            name: c_str(elf, names_at + name as usize),
            kind,
            addr,
            offset,
            size,
            link,
        })
        .collect()
}

/// (name, address, size) of every function defined in `.symtab`.
fn functions(elf: &[u8], sections: &[Section]) -> Vec<(String, u64, u64)> {
    const SHT_SYMTAB: u32 = 2;
    const STT_FUNC: u8 = 2;
    let symtab = sections
        .iter()
        .find(|s| s.kind == SHT_SYMTAB)
        .expect("the release binary has no symbol table (stripped?)");
    let strtab = &sections[symtab.link as usize];
    let mut out = Vec::new();
    for i in 0..(symtab.size / 24) as usize {
        let at = symtab.offset as usize + i * 24;
        let info = elf[at + 4];
        let value = u64_at(elf, at + 8);
        let size = u64_at(elf, at + 16);
        if info & 0xf == STT_FUNC && value != 0 && size != 0 {
            let name = c_str(elf, strtab.offset as usize + u32_at(elf, at) as usize);
            out.push((name, value, size));
        }
    }
    out
}

/// A legacy-mangled Rust name without its hash (`…17h<hex>E` → `…17h`), as the hash-less
/// lines of `startup.ld` have it.
fn without_hash(name: &str) -> Option<&str> {
    let at = name.rfind("17h")?;
    let rest = &name[at + 3..];
    let hex = rest.strip_suffix('E')?;
    (!hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit())).then(|| &name[..at + 3])
}

fn release_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--bin", "holdfast"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --release");
    assert!(status.success(), "cargo build --release failed");
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("release")
        .join("holdfast")
}

#[test]
fn startup_functions_lead_the_text_and_relocations_are_packed() {
    if !enabled() {
        println!(
            "skipped: set HOLDFAST_TEST_RELEASE=1 (or CI) to build and inspect the release binary"
        );
        return;
    }
    let binary = release_binary();
    let elf = std::fs::read(&binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let sections = sections(&elf);
    let text = sections
        .iter()
        .find(|s| s.name == ".text")
        .expect("no .text section");
    assert!(
        sections.iter().any(|s| s.name == ".relr.dyn"),
        "no .relr.dyn: the release link did not pack relative relocations (src/build.rs)"
    );

    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/link/startup.ld"))
            .expect("read src/link/startup.ld");
    let mut exact = HashSet::new();
    let mut hashless = HashSet::new();
    for line in script.lines() {
        let Some(name) = line.trim().strip_prefix("*(.text.") else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap_or_default();
        match name.strip_suffix('*') {
            Some(prefix) => hashless.insert(prefix.to_owned()),
            None => exact.insert(name.to_owned()),
        };
    }
    assert!(
        exact.len() > 300,
        "src/link/startup.ld lists only {} functions",
        exact.len()
    );

    let functions = functions(&elf, &sections);
    let mut exact_found = 0;
    let mut hashless_found = HashSet::new();
    let mut listed_bytes = 0;
    let mut listed_end = text.addr;
    for (name, addr, size) in &functions {
        let by_exact = exact.contains(name.as_str());
        let by_prefix = without_hash(name).filter(|p| hashless.contains(*p));
        if by_exact {
            exact_found += 1;
        }
        if let Some(p) = by_prefix {
            hashless_found.insert(p);
        }
        // Hand-written assembly (ring's) has one `.text` section per file, which the linker
        // cannot move by function name: only Rust functions count for the layout.
        let rust = name.starts_with("_ZN") || name.starts_with("_R");
        if rust && (by_exact || by_prefix.is_some()) {
            listed_bytes += size;
            listed_end = listed_end.max(addr + size);
        }
    }
    let span = listed_end - text.addr;
    println!(
        "{}: .text {} KiB; listed functions {} KiB, all within the first {} KiB; exact names found {} of {}, hash-less {} of {}",
        binary.display(),
        text.size / 1024,
        listed_bytes / 1024,
        span / 1024,
        exact_found,
        exact.len(),
        hashless_found.len(),
        hashless.len()
    );
    // Most listed names must still exist, or the list no longer describes this program.
    assert!(
        hashless_found.len() * 10 >= hashless.len() * 8,
        "only {} of {} hash-less names in src/link/startup.ld are in the binary: regenerate it with tests/tools/startup-order",
        hashless_found.len(),
        hashless.len()
    );
    // Together at the front: the listed functions fill the start of .text with no more than
    // alignment padding between them.
    assert!(
        span <= listed_bytes + listed_bytes / 10 + 64 * 1024,
        "the listed functions ({} KiB) are spread over the first {} KiB of .text: the release link did not order them (src/build.rs)",
        listed_bytes / 1024,
        span / 1024
    );
}
