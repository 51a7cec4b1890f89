#!/usr/bin/env bash
# `cargo run`'s runner for the kernel target (.cargo/config.toml): wraps
# the kernel ELF cargo built in a GRUB image, as `make iso` does, and
# boots it in QEMU like `make run`. Arguments after `cargo run --` go to
# QEMU (for example `cargo run -- -smp 2`); MEM and FIRMWARE=uefi are read
# from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
elf=$1
shift
scripts/deps.sh
dir=target/cargo-run
rm -rf "$dir" && mkdir -p "$dir/iso/boot/grub"
strip --strip-debug -o "$dir/iso/boot/kernel.elf" "$elf"
cp grub/grub.cfg "$dir/iso/boot/grub/grub.cfg"
grub-mkrescue -o "$dir/incroos.iso" "$dir/iso" >"$dir/grub-mkrescue.log" 2>&1 || {
    cat "$dir/grub-mkrescue.log" >&2
    exit 1
}
exec scripts/run.sh "$dir/incroos.iso" "${FIRMWARE:-bios}" "${MEM:-256M}" "$@"
