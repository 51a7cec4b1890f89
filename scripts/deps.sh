#!/usr/bin/env bash
# Checks that every tool the build and the tests need is installed.
# As root with apt-get available it installs what is missing; otherwise it
# names the Debian packages to install and fails.
#
#   scripts/deps.sh            check (and install as root)
#   scripts/deps.sh --check    check only, never install
set -euo pipefail

# command-or-file  package
REQUIRED=(
    "qemu-system-x86_64 qemu-system-x86"
    "grub-mkrescue grub-common"
    "/usr/lib/grub/i386-pc/moddep.lst grub-pc-bin"
    "/usr/lib/grub/x86_64-efi/moddep.lst grub-efi-amd64-bin"
    "xorriso xorriso"
    "mformat mtools"
    "/usr/share/ovmf/OVMF.fd ovmf"
    "gdb gdb"
)

missing=()
for entry in "${REQUIRED[@]}"; do
    read -r what package <<<"$entry"
    if [[ "$what" == /* ]]; then
        [[ -e "$what" ]] || missing+=("$package")
    else
        command -v "$what" >/dev/null 2>&1 || missing+=("$package")
    fi
done

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust with rustup (https://rustup.rs);" >&2
    echo "       rust-toolchain.toml then selects the pinned toolchain and target." >&2
    exit 1
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "missing Debian packages: ${missing[*]}" >&2
if [[ "${1:-}" != "--check" && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing them with apt-get (running as root)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}" >&2
    exit 0
fi
echo "error: install them with:  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
exit 1
