//! Build script: links the kernel with linker.ld when building for bare
//! metal, and compiles the freestanding C test of the C interface into it.

use std::process::Command;

/// Flags for C code that runs inside the kernel: no libc, no red zone
/// (interrupts use the stack), no SSE (the kernel does not save it), code
/// at a fixed address like the rest of the kernel.
const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-mcmodel=small",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
];

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");

        let object = format!("{out}/mm_abi_test.o");
        let status = Command::new("gcc")
            .args(C_FLAGS)
            .arg(format!("-I{dir}/include"))
            .args(["-c", &format!("{dir}/tests/c/mm_abi_test.c"), "-o", &object])
            .status()
            .unwrap_or_else(|error| {
                panic!("cannot run gcc ({error}): install it with `apt-get install gcc`")
            });
        assert!(status.success(), "gcc failed on tests/c/mm_abi_test.c");
        println!("cargo:rustc-link-arg-bins={object}");
    }
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=asm");
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=tests/c");
}
