//! Lays out the release binary's code so what a running server executes sits together. The
//! linker puts the functions `linker/symbol-order.txt` names first, in its order: those start-up
//! runs, then those the load tool's workloads run (the file is made by `scripts/symbol-order`).
//! The kernel maps a binary's code 64 KiB around each page a process touches, so code scattered
//! over the binary's 27 MB made 17 MiB of the idle server's resident memory and 26 MiB of a busy
//! one's. Names the file lists that a build no longer has are skipped, so a stale file only
//! costs some of the gain.
//!
//! Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR) when the build's glibc
//! reads them (2.36 and later; the binary then needs one as recent where it runs, as a binary
//! built on the machine that runs it or the container image has): the dynamic loader reads
//! every relocation at start, and unpacked they were 1.3 MB of the binary kept resident.
//!
//! Only for release builds for x86_64 Linux with glibc, whose default linker (LLD, since Rust
//! 1.90) takes the options.

fn main() {
    println!("cargo::rerun-if-changed=linker/symbol-order.txt");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let linked_by_lld = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if release && linked_by_lld {
        let order = concat!(env!("CARGO_MANIFEST_DIR"), "/linker/symbol-order.txt");
        println!("cargo::rustc-link-arg-bin=hearth=-Wl,--symbol-ordering-file={order}");
        println!("cargo::rustc-link-arg-bin=hearth=-Wl,--no-warn-symbol-ordering");
        if glibc_reads_packed_relocations() {
            println!("cargo::rustc-link-arg-bin=hearth=-Wl,-z,pack-relative-relocs");
        }
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is 2.36 or later.
fn glibc_reads_packed_relocations() -> bool {
    let Ok(output) = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&output.stdout);
    let mut numbers = version.trim().trim_start_matches("glibc ").split('.').map(str::parse::<u32>);
    matches!((numbers.next(), numbers.next()), (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (2, 36))
}
