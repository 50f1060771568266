#!/usr/bin/env bash
# Generation-speed benchmark (issues 6 and 15).
#
#   benches/generation/run.sh [options]
#
# Builds the release binary, builds or reuses the synthetic systems (real Nix
# database of 100,000 paths, 1,000 unit files; 100 annotated, plus the 10 and
# 1,000 annotated variants), measures the generator and the
# `nix-store --query --requisites` baseline in the same run, checks the
# drop-ins against `nix-store -qR`, and prints a report.
#
# Options (the rest are passed to bench.py, see `bench.py --help`):
#   --quick          only the 100-annotated system
#   --profile[=N]    also profile N (default 30) generator runs with perf,
#                    using a build with symbols (profile "bench-profiling")
#   --callgrind      also one run under valgrind --tool=callgrind (same build)
#   --generator BIN  measure BIN instead of building the release binary
#   --rev REV        build and measure the committed revision REV (git archive
#                    into the cache), not the working tree other people edit
#   --runs N / --warmup N / --rss-runs N / --variants 10,1000 / --hyperfine
#   --rebuild        rebuild the cached systems
#   --strict         exit 3 when a target is missed
# Environment:
#   NCG_BENCH_CACHE  cache directory (default /var/cache/nix-confinement-generator-bench)
#   CARGO_TARGET_DIR (default /work/target-bench when it exists, else target/)
#
# Exit status: 0 measured (targets may be MISSed: it is a benchmark), 1 a
# generator run failed (its stderr is printed), 2 the drop-ins are wrong.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${NCG_BENCH_CACHE:-/var/cache/nix-confinement-generator-bench}
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    if [[ -d /work/target-bench ]]; then export CARGO_TARGET_DIR=/work/target-bench
    else export CARGO_TARGET_DIR=$repo/target; fi
fi

generator="" rev="" profile_runs=0 callgrind=0 args=()
while (($#)); do
    case $1 in
        --quick) args+=(--variants "") ;;
        --profile) profile_runs=30 ;;
        --profile=*) profile_runs=${1#--profile=} ;;
        --callgrind) callgrind=1; args+=(--callgrind) ;;
        --generator) generator=$2; shift ;;
        --generator=*) generator=${1#--generator=} ;;
        --rev) rev=$2; shift ;;
        --rev=*) rev=${1#--rev=} ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1") ;;
    esac
    shift
done

need() { command -v "$1" >/dev/null || { echo "run.sh: $1 is missing ($2)" >&2; exit 1; }; }
need nix-store "apt-get install -y nix-bin"
need python3 "Python 3.11"
[[ -x /usr/bin/time ]] || { echo "run.sh: /usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }

src=$repo
if [[ -n $rev ]]; then
    sha=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
    src=$cache/src/$sha
    if [[ ! -d $src ]]; then
        mkdir -p "$src.tmp"
        git -C "$repo" archive "$sha" | tar -x -C "$src.tmp"
        mv "$src.tmp" "$src"
    fi
    echo "[bench] building revision $sha from $src" >&2
fi
build() { # build PROFILE-ARGS…: builds in $src, prints the binary's path
    local dir=$1; shift
    (cd "$src" && cargo build --quiet "$@") >&2
    local bin=$CARGO_TARGET_DIR/$dir/nix-confinement-generator
    if [[ -n $rev ]]; then # the target directory is shared: keep a copy per revision
        mkdir -p "$cache/bin"
        cp "$bin" "$cache/bin/$dir-$sha"
        bin=$cache/bin/$dir-$sha
    fi
    echo "$bin"
}
if [[ -z $generator ]]; then
    echo "[bench] cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
    generator=$(build release --release)
fi
if ((profile_runs > 0 || callgrind)); then
    ((profile_runs > 0)) && need perf "apt-get install -y linux-perf"
    ((callgrind)) && need valgrind "apt-get install -y valgrind"
    # The release profile strips symbols: profile a build that keeps them,
    # otherwise identical (a profile defined on the command line, so
    # Cargo.toml stays as it is).
    echo "[bench] cargo build --profile bench-profiling (release + symbols)" >&2
    profiling=$(build bench-profiling --profile bench-profiling \
        --config 'profile.bench-profiling.inherits="release"' \
        --config 'profile.bench-profiling.strip=false' \
        --config 'profile.bench-profiling.debug="line-tables-only"')
    args+=(--perf "$profile_runs" --profile-generator "$profiling")
fi

[[ -n $rev ]] && args+=(--label "$(git -C "$repo" describe --always "$sha")")
exec python3 "$here/bench.py" --generator "$generator" --cache "$cache" "${args[@]}"
