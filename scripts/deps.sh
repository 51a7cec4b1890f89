#!/usr/bin/env bash
# Checks that every tool the build and the tests need is installed.
# As root with apt-get available it installs what is missing; otherwise it
# names the Debian packages to install and fails.
#
#   scripts/deps.sh            check (and install as root)
#   scripts/deps.sh --check    check only, never install
#   scripts/deps.sh plots      only what `make plots` needs: matplotlib
#                              (also with --check)
#
# The plots run on $PLOTS_PYTHON, by default /usr/bin/python3: Debian's
# python3-matplotlib installs for that interpreter, not for a pyenv or
# venv python3 that may come first in PATH.
set -euo pipefail

check_only=0
group=all
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        plots) group=plots ;;
        *) echo "usage: $0 [--check] [plots]" >&2; exit 2 ;;
    esac
done

# command, /file or python:module (of $PLOTS_PYTHON), then the Debian
# package that has it
REQUIRED=(
    "qemu-system-x86_64 qemu-system-x86"
    "grub-mkrescue grub-common"
    "/usr/lib/grub/i386-pc/moddep.lst grub-pc-bin"
    "/usr/lib/grub/x86_64-efi/moddep.lst grub-efi-amd64-bin"
    "xorriso xorriso"
    "mformat mtools"
    "/usr/share/ovmf/OVMF.fd ovmf"
    "gdb gdb"
    "python3 python3"
    "gcc gcc"
    "strip binutils"
)
PLOTS_PYTHON=${PLOTS_PYTHON:-/usr/bin/python3}
if [[ $group == plots ]]; then
    REQUIRED=(
        "$PLOTS_PYTHON python3"
        "python:matplotlib python3-matplotlib"
    )
fi

missing=()
for entry in "${REQUIRED[@]}"; do
    read -r what package <<<"$entry"
    if [[ "$what" == /* ]]; then
        [[ -e "$what" ]] || missing+=("$package")
    elif [[ "$what" == python:* ]]; then
        "$PLOTS_PYTHON" -c "import ${what#python:}" >/dev/null 2>&1 || missing+=("$package")
    else
        command -v "$what" >/dev/null 2>&1 || missing+=("$package")
    fi
done

can_install=0
if [[ $check_only == 0 && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    can_install=1
fi

install_packages() {
    echo "installing ${missing[*]} with apt-get (running as root)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}" >&2
    missing=()
}

# Everything missing is named in one message, with the commands to run.
# (The plots need no Rust.)
if [[ $group == all ]] && ! command -v cargo >/dev/null 2>&1; then
    if [[ ${#missing[@]} -gt 0 && $can_install == 1 ]]; then
        install_packages
    fi
    {
        echo "error: missing: Rust (cargo)${missing[*]:+, and the Debian packages ${missing[*]}}. Run:"
        echo "    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   # then open a new shell"
        if [[ ${#missing[@]} -gt 0 ]]; then
            echo "    sudo apt-get install --no-install-recommends ${missing[*]}"
        fi
        echo "rust-toolchain.toml then selects the pinned toolchain, target and components."
    } >&2
    exit 1
fi

# rustup does not add a pinned toolchain's targets and components by itself
# when the toolchain is already installed (or auto-install is off): do it.
if [[ $group == all ]] && command -v rustup >/dev/null 2>&1; then
    toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
    # grep without -q: under pipefail, -q can stop reading early and fail
    # the pipeline through SIGPIPE.
    if ! rustup toolchain list | grep "^$toolchain" >/dev/null; then
        echo "installing Rust toolchain $toolchain with rustup..." >&2
        rustup toolchain install "$toolchain" --profile minimal >&2
    fi
    if ! rustup target list --installed --toolchain "$toolchain" | grep -x x86_64-unknown-none >/dev/null; then
        echo "adding the x86_64-unknown-none target to $toolchain..." >&2
        rustup target add --toolchain "$toolchain" x86_64-unknown-none >&2
    fi
    for component in clippy rustfmt; do
        if ! rustup component list --installed --toolchain "$toolchain" | grep "^$component" >/dev/null; then
            echo "adding $component to $toolchain..." >&2
            rustup component add --toolchain "$toolchain" "$component" >&2
        fi
    done
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "missing Debian packages: ${missing[*]}" >&2
if [[ $can_install == 1 ]]; then
    install_packages
    exit 0
fi
echo "error: install them with:  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
exit 1
