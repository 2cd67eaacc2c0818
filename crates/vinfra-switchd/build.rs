//! Compiles the kernel fast path's eBPF program (`bpf/fastpath.bpf.c`) with clang, when the
//! build host has it: the daemon then carries the object and cfg `fast_path_object` is set.
//! Without clang the daemon builds without a fast path and says so when it starts.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(fast_path_object)");
    println!("cargo:rerun-if-changed=bpf/fastpath.bpf.c");
    // A clang installed later is found by the next build.
    println!("cargo:rerun-if-env-changed=PATH");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("fastpath.bpf.o");
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "x86_64-linux-gnu".to_string());
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", "bpf/fastpath.bpf.c", "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => println!("cargo:rustc-cfg=fast_path_object"),
        Ok(s) => println!("cargo:warning=clang failed on bpf/fastpath.bpf.c ({s}): building without the kernel fast path"),
        Err(e) => println!("cargo:warning=no clang ({e}): building without the kernel fast path"),
    }
}
