#!/usr/bin/env bash
# Checks that every tool the build and the tests need is installed: the
# Debian packages, Rust (cargo, through rustup), and the pinned toolchain
# of rust-toolchain.toml with its x86_64-unknown-none target, clippy and
# rustfmt. Everything missing is reported in one message, each piece with
# the command that installs it.
#
# It installs what it can first: as root with apt-get, the missing Debian
# packages; with rustup, the pinned toolchain, target and components
# (rustup does not add them by itself to a toolchain already installed).
#
#   scripts/deps.sh            check, install what it can, report the rest
#   scripts/deps.sh --check    check only, never install
#   scripts/deps.sh plots      only what `make plots` needs: matplotlib
#                              (also with --check)
#
# The plots run on $PLOTS_PYTHON, by default /usr/bin/python3: Debian's
# python3-matplotlib installs for that interpreter, not for a pyenv or
# venv python3 that may come first in PATH.
set -uo pipefail

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
TARGET=x86_64-unknown-none
COMPONENTS=(clippy rustfmt)
RUSTUP_INSTALL="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"

install=1
group=all
for arg in "$@"; do
    case "$arg" in
        --check) install=0 ;;
        plots) group=plots ;;
        *) echo "usage: $0 [--check] [plots]" >&2; exit 2 ;;
    esac
done
PLOTS_PYTHON=${PLOTS_PYTHON:-/usr/bin/python3}
if [[ $group == plots ]]; then
    REQUIRED=(
        "$PLOTS_PYTHON python3"
        "python:matplotlib python3-matplotlib"
    )
fi

# What is still missing after the installs: one line each, "what|command".
missing=()
report() { missing+=("$1|$2"); }

# --- Debian packages ------------------------------------------------------
packages=()
for entry in "${REQUIRED[@]}"; do
    read -r what package <<<"$entry"
    if [[ $what == /* ]]; then
        [[ -e $what ]] || packages+=("$package")
    elif [[ $what == python:* ]]; then
        "$PLOTS_PYTHON" -c "import ${what#python:}" >/dev/null 2>&1 || packages+=("$package")
    else
        command -v "$what" >/dev/null 2>&1 || packages+=("$package")
    fi
done
if [[ ${#packages[@]} -gt 0 && $install == 1 && $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${packages[*]} with apt-get (running as root)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
        echo "installed: ${packages[*]}" >&2
        packages=()
    fi
fi
if [[ ${#packages[@]} -gt 0 ]]; then
    report "the Debian packages ${packages[*]}" \
        "sudo apt-get install --no-install-recommends ${packages[*]}"
fi

# --- Rust -------------------------------------------------------------------
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")

# Runs "$@" to install a piece when installing is on; reports `what` with
# the command otherwise, or when it fails.
add_or_report() {
    local what=$1
    shift
    if [[ $install == 1 ]]; then
        echo "adding $what with rustup..." >&2
        "$@" >&2 && return
    fi
    report "$what" "$*"
}

# grep without -q below: under pipefail, -q can stop reading early and
# fail the pipeline through SIGPIPE.
if [[ $group == plots ]]; then
    :   # the plots need no Rust
elif ! command -v cargo >/dev/null 2>&1; then
    report "Rust (cargo)" "$RUSTUP_INSTALL   # then open a new shell; rust-toolchain.toml selects the rest"
elif ! command -v rustup >/dev/null 2>&1; then
    # A cargo without rustup (Debian's rust packages): nothing can add the
    # bare-metal target or the lint tools to it; name what it lacks.
    lacks=()
    sysroot=$(rustc --print sysroot 2>/dev/null)
    [[ -n $sysroot && -d $sysroot/lib/rustlib/$TARGET ]] || lacks+=("the $TARGET target")
    cargo clippy --version >/dev/null 2>&1 || lacks+=(clippy)
    cargo fmt --version >/dev/null 2>&1 || lacks+=(rustfmt)
    if [[ ${#lacks[@]} -gt 0 ]]; then
        report "rustup: $(command -v cargo) is not rustup's and lacks $(IFS=,; echo "${lacks[*]}" | sed 's/,/, /g')" \
            "$RUSTUP_INSTALL   # then open a new shell (rustup's cargo must come first in PATH)"
    fi
elif ! rustup toolchain list 2>/dev/null | grep "^$toolchain" >/dev/null; then
    add_or_report "Rust toolchain $toolchain" rustup toolchain install "$toolchain" --profile minimal \
        --target "$TARGET" --component "$(IFS=,; echo "${COMPONENTS[*]}")"
else
    if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -x "$TARGET" >/dev/null; then
        add_or_report "the $TARGET target of $toolchain" rustup target add --toolchain "$toolchain" "$TARGET"
    fi
    for component in "${COMPONENTS[@]}"; do
        if ! rustup component list --installed --toolchain "$toolchain" 2>/dev/null | grep "^$component" >/dev/null; then
            add_or_report "$component for $toolchain" rustup component add --toolchain "$toolchain" "$component"
        fi
    done
fi

# --- One message ------------------------------------------------------------
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
{
    echo "error: missing ${#missing[@]} piece(s) the build needs:"
    for entry in "${missing[@]}"; do
        echo "  - ${entry%%|*}"
    done
    echo "Install them with:"
    for entry in "${missing[@]}"; do
        echo "    ${entry#*|}"
    done
} >&2
exit 1
