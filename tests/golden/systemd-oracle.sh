#!/bin/bash
# What systemd itself makes of a golden case: builds the case's root (files and
# `links`) in a temporary directory and loads its units with the real unit
# loader, `systemd-analyze --root DIR verify` (systemd >= 250), printing for
# each unit its fragment, its drop-ins in the order applied, its aliases and
# the settings systemd shows in its dump.
#
#   tests/golden/systemd-oracle.sh tests/golden/CASE [UNIT...]
#
# Without UNIT arguments, every non-template name in CASE/expected.txt.
# Compare by eye with CASE/expected.txt. This is how the expected files were
# checked; it is not part of `cargo test` (it needs systemd and, for the unit
# dump, SYSTEMD_LOG_LEVEL=debug). Differences that are not systemd's rules:
# - absolute links that leave the search path are made relative here: under
#   --root, systemd opens a linked unit file through the host's file system;
# - drop-in paths are shown resolved (systemd resolves a linked .d/).
set -euo pipefail
case_dir=${1:?usage: $0 tests/golden/CASE [UNIT...]}
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -d "$case_dir/root" ]; then
    cp -a "$case_dir/root/." "$tmp/"
fi
# Relative links to ../../../dev/null reach the host's /dev/null this way.
mkdir -p "$tmp/dev"
ln -s /dev/null "$tmp/dev/null"
if [ -f "$case_dir/links" ]; then
    grep -v '^\s*\(#\|$\)' "$case_dir/links" | while IFS= read -r line; do
        path=${line%% -> *}
        target=${line#* -> }
        mkdir -p "$(dirname "$tmp/$path")"
        case $target in
            /dev/null | [!/]*) ln -s "$target" "$tmp/$path" ;;
            *) ln -sr "$tmp$target" "$tmp/$path" ;;
        esac
    done
fi
units=("$@")
if [ ${#units[@]} -eq 0 ]; then
    mapfile -t units < <(grep -oE '^(  )?[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|path|mount)\b' \
        "$case_dir/expected.txt" | sed 's/^ *//' | grep -v '@\.' | sort -u)
fi
if [ -f "$case_dir/env" ]; then
    value=$(sed -n 's/^SYSTEMD_UNIT_PATH=//p' "$case_dir/env")
    export SYSTEMD_UNIT_PATH="$value"
fi
SYSTEMD_LOG_LEVEL=debug systemd-analyze --man=no --root="$tmp" verify "${units[@]}" 2>&1 |
    grep -E '^	-> Unit |Unit Load State|Fragment Path|DropIn Path|^		(Description|Documentation|Environment):|Command Line|^		-> Exec|has alias|is masked|not found|Unknown (key|section)|Missing '='|Failed to (open|read|load)|alias|ignoring\.$' |
    grep -vE 'sysinit\.target|shutdown\.target|basic\.target|\.slice|Cannot stat|PID 1' |
    sed "s#$tmp##g"
