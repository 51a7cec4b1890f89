//! IncroOS kernel entry point (the Rust side of the boot).
#![cfg_attr(target_os = "none", no_std, no_main)]

/// On the host this binary only explains itself: the kernel runs on bare metal.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("incroos is a kernel: build it with `make iso` and boot it with `make run`");
}
