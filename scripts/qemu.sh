#!/usr/bin/env bash
# The one QEMU command line of the project: every target and test script
# starts the kernel through this file.
#
#   qemu.sh ISO bios|uefi MEM [extra QEMU arguments...]
#
# Runs qemu-system-x86_64 under TCG (ACCEL=kvm to override, where KVM
# works) with MEM of RAM, the ISO as CD-ROM, no reboot (a triple fault
# ends QEMU), and the isa-debug-exit device at port 0xf4 through which the
# kernel reports test results (exit status 33 = pass, 35 = fail); uefi boots
# through OVMF (OVMF=path to override). Extra arguments are appended.
set -euo pipefail

iso=$1 firmware=$2 mem=$3
shift 3
args=(-accel "${ACCEL:-tcg}" -m "$mem" -cdrom "$iso" -boot d -no-reboot
      -device isa-debug-exit,iobase=0xf4,iosize=0x04)
case $firmware in
    bios) ;;
    uefi) args+=(-bios "${OVMF:-/usr/share/ovmf/OVMF.fd}") ;;
    *) echo "qemu.sh: firmware must be bios or uefi, not $firmware" >&2; exit 2 ;;
esac
exec qemu-system-x86_64 "${args[@]}" "$@"
