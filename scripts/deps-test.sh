#!/usr/bin/env bash
# Checks scripts/deps.sh's message on machines that lack several pieces at
# once, simulated with a PATH of links to the real tools minus the missing
# ones and small fakes of cargo, rustc and rustup. apt-get is never on that
# PATH, so nothing is installed; --check where nothing should even be
# tried.
set -uo pipefail

deps=$(cd "$(dirname "$0")" && pwd)/deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
failed=0

# machine NAME TOOL...: a bin directory with links to these real tools.
machine() {
    local bin=$work/$1
    shift
    mkdir -p "$bin"
    for tool in bash sed grep dirname "$@"; do
        ln -sf "$(command -v "$tool")" "$bin/$tool"
    done
    echo "$bin"
}

# fake BIN NAME SCRIPT: a fake command in BIN.
fake() {
    printf '#!%s\n%s\n' "$(command -v bash)" "$3" >"$1/$2"
    chmod +x "$1/$2"
}

# check NAME BIN ARGS -- REGEX...: deps.sh under PATH=BIN fails with one
# message holding every REGEX (extended, one line each).
check() {
    local name=$1 bin=$2
    shift 2
    local args=()
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
    local out status why=""
    out=$(PATH=$bin bash "$deps" "${args[@]}" 2>&1)
    status=$?
    [[ $status == 1 ]] || why="exit status $status, expected 1"
    [[ -z $why && $(grep -c '^error:' <<<"$out") != 1 ]] && why="not exactly one error message"
    for pattern in "$@"; do
        [[ -z $why ]] && ! grep -Eq -- "$pattern" <<<"$out" && why="no line matching /$pattern/"
    done
    if [[ -z $why ]]; then
        echo "deps.sh $name ... ok"
    else
        echo "deps.sh $name ... FAILED ($why); it printed:"
        sed 's/^/    | /' <<<"$out"
        failed=1
    fi
}

tools=(qemu-system-x86_64 grub-mkrescue xorriso mformat gdb python3 gcc strip)

# No Rust and two packages missing: all three in the one message.
bin=$(machine no-rust "${tools[@]}")
rm -f "$bin/qemu-system-x86_64" "$bin/gdb"
check no-rust-no-packages "$bin" -- \
    '^error: missing 2 piece' \
    '^  - the Debian packages qemu-system-x86 gdb$' \
    '^  - Rust \(cargo\)$' \
    '^    sudo apt-get install --no-install-recommends qemu-system-x86 gdb$' \
    '^    curl .*https://sh.rustup.rs \| sh'

# Debian's cargo (no rustup): no bare-metal target, no clippy.
bin=$(machine distro-cargo "${tools[@]}")
mkdir -p "$work/sysroot/lib/rustlib/x86_64-unknown-linux-gnu"
fake "$bin" rustc "echo $work/sysroot"
fake "$bin" cargo '[[ $1 == fmt ]]'
check distro-cargo "$bin" -- \
    '^error: missing 1 piece' \
    "^  - rustup: $bin/cargo is not rustup's and lacks the x86_64-unknown-none target, clippy$" \
    '^    curl .*https://sh.rustup.rs \| sh'

# rustup with the toolchain but not its target nor rustfmt, and mtools
# missing: with --check nothing is added, all three are reported.
bin=$(machine rustup-partial "${tools[@]}")
rm -f "$bin/mformat"
fake "$bin" cargo 'exit 0'
fake "$bin" rustup "case \$1 in
    toolchain) echo '$toolchain-x86_64-unknown-linux-gnu (active)' ;;
    target) echo x86_64-unknown-linux-gnu ;;
    component) echo clippy-x86_64-unknown-linux-gnu ;;
esac"
check rustup-partial-check "$bin" --check -- \
    '^error: missing 3 piece' \
    '^  - the Debian packages mtools$' \
    "^    rustup target add --toolchain $toolchain x86_64-unknown-none$" \
    "^    rustup component add --toolchain $toolchain rustfmt$"
# Without --check it tries rustup (which fails here, offline say): what
# could not be added is reported the same way.
fake "$bin" rustup "case \$1 in
    toolchain) echo '$toolchain-x86_64-unknown-linux-gnu (active)' ;;
    target) [[ \$2 == list ]] && echo x86_64-unknown-linux-gnu || exit 1 ;;
    component) [[ \$2 == list ]] && echo clippy-x86_64-unknown-linux-gnu || exit 1 ;;
esac"
check rustup-add-fails "$bin" -- \
    '^adding the x86_64-unknown-none target of .* with rustup' \
    '^error: missing 3 piece' \
    "^    rustup target add --toolchain $toolchain x86_64-unknown-none$"

# No toolchain at all: one rustup command brings it with the rest.
fake "$bin" rustup "[[ \$1 == toolchain ]] && echo stable-x86_64-unknown-linux-gnu"
check rustup-no-toolchain "$bin" --check -- \
    "^    rustup toolchain install $toolchain --profile minimal --target x86_64-unknown-none --component clippy,rustfmt$"

exit $failed
