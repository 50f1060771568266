#!/usr/bin/env bash
# The README's second command: the whole test suite, as root on Debian.
# Installs what the tests need when missing, then runs the style checks,
# the unit and integration tests (real Nix, real systemd-analyze), the demo,
# the end-to-end suite in booted systemd containers and the packaging tests.
# SKIP_DEMO=1, SKIP_E2E=1, SKIP_PACKAGING=1 leave those out.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

packages=()
command -v nix-store >/dev/null 2>&1 || packages+=(nix-bin)
command -v systemd-nspawn >/dev/null 2>&1 || packages+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
[ -x /bin/busybox ] || packages+=(busybox-static)
command -v unshare >/dev/null 2>&1 || packages+=(util-linux)
command -v strace >/dev/null 2>&1 || packages+=(strace)
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet 2>&1 | tee /tmp/nix-confinement-generator-cargo-test.log
if [ -z "${SKIP_DEMO:-}" ]; then
    # The README's first command doubles as a test: its services must run
    # confined in a booted container. Its whole output only when it fails.
    log=/tmp/nix-confinement-generator-demo.log
    echo "== demo (tests/demo/run.sh, output in $log)"
    if ! tests/demo/run.sh >"$log" 2>&1; then
        cat "$log"
        exit 1
    fi
    tail -n 1 "$log"
fi
if [ -z "${SKIP_E2E:-}" ] && [ -x tests/e2e/run.sh ]; then
    cargo build --release --quiet
    # Closure views (the default) and each path bound on its own (the
    # fallback), on systemd 252 and 257.
    for suite in bookworm trixie; do
        for binding in view per-path; do
            echo "== end-to-end suite, Debian $suite, binding $binding"
            NCG_E2E_BUILD=0 tests/e2e/run.sh --suite "$suite" --binding "$binding"
        done
    done
fi
if [ -z "${SKIP_PACKAGING:-}" ]; then
    echo "== packaging: make install, man pages, .deb (also in a booted Debian), Nix files"
    tests/packaging/run.sh
fi
