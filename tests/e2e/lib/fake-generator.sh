# shellcheck shell=bash
# ============================================================================
#  FAKE GENERATOR: DEVELOPMENT FALLBACK ONLY (NCG_E2E_FAKE_GENERATOR=1).
#
#  Not the product and not part of the default run: run.sh sources this
#  file only when NCG_E2E_FAKE_GENERATOR=1. It let the e2e harness be
#  developed and validated before the real generator existed, by writing the
#  drop-ins the NixOS module (reference/systemd-confinement.nix) writes, for
#  the e2e cases' own units only (ncg-*), with a deliberately small unit
#  reader (no continuation lines, no escapes, no specifiers besides %n/%i).
#  The drop-ins are computed on the host (nix-store -qR against the test
#  store) and a stand-in generator script in the container copies them into
#  the generator's normal directory at boot and at every daemon-reload, so
#  they appear where the real generator's drop-ins appear.
# ============================================================================

# fake_host PATH: host path of a logical container path.
fake_host() {
  case $1 in
    /nix | /nix/*) printf '%s%s' "$FAKE_STORE_ROOT" "$1" ;;
    *) printf '%s%s' "$FAKE_ROOT" "$1" ;;
  esac
}

# fake_resolve PATH: resolve every symlink of a logical path, inside the
# container's view (the store under /nix). Prints the result; 1 if missing.
fake_resolve() {
  local out= rest=${1#/} comp link n=0
  while [ -n "$rest" ]; do
    comp=${rest%%/*}
    if [[ $rest == */* ]]; then rest=${rest#*/}; else rest=; fi
    case $comp in
      '' | .) continue ;;
      ..) out=${out%/*}; continue ;;
    esac
    if [ -L "$(fake_host "$out/$comp")" ]; then
      n=$((n + 1))
      [ "$n" -lt 40 ] || return 1
      link=$(readlink "$(fake_host "$out/$comp")")
      if [[ $link == /* ]]; then
        out=
        rest=${link#/}${rest:+/$rest}
      else
        rest=$link${rest:+/$rest}
      fi
    else
      out=$out/$comp
    fi
  done
  [ -e "$(fake_host "${out:-/}")" ] || return 1
  printf '%s\n' "${out:-/}"
}

fake_store_paths() { grep -Eo '/nix/store/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+._?=-]+' || true; }

# fake_unit_text UNIT: the unit file, then its drop-ins (etc before usr/lib
# for the same name, lexical order by file name), for a service or template.
fake_unit_text() {
  local unit=$1 dir f name seen=' ' files=()
  for dir in etc/systemd/system usr/lib/systemd/system; do
    if [ -f "$FAKE_ROOT/$dir/$unit" ]; then
      files+=("$FAKE_ROOT/$dir/$unit")
      break
    fi
  done
  [ ${#files[@]} -gt 0 ] || return 1
  for f in $(for dir in etc/systemd/system usr/lib/systemd/system; do
    [ -d "$FAKE_ROOT/$dir/$unit.d" ] && ls "$FAKE_ROOT/$dir/$unit.d"/*.conf 2>/dev/null
  done | awk -F/ '{ print $NF "\t" $0 }' | sort -s -k1,1 | cut -f2); do
    name=${f##*/}
    case $seen in *" $name "*) continue ;; esac
    seen="$seen$name "
    files+=("$f")
  done
  awk '{ print }' "${files[@]}"
}

fake_bool() { case ${1,,} in 1 | yes | y | true | t | on) return 0 ;; *) return 1 ;; esac; }

# fake_dropin UNIT: print the drop-in for UNIT (empty: not annotated).
fake_dropin() {
  local unit=$1 text section= line key value
  local enable=no mode= fullunit=no binsh_set=no binsh= packages=() exec_values=() all_values=()
  local -A unitset=()
  text=$(fake_unit_text "$unit") || return 0
  while IFS= read -r line; do
    line=${line#"${line%%[![:space:]]*}"}
    case $line in '' | '#'* | ';'*) continue ;; '['*) section=$line; continue ;; esac
    [ "$section" = '[Service]' ] || { all_values+=("${line#*=}"); continue; }
    key=${line%%=*}
    key=${key%"${key##*[![:space:]]}"}
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    all_values+=("$value")
    case $key in
      X-ConfinementEnable) fake_bool "$value" && enable=yes || enable=no ;;
      X-ConfinementMode) mode=$value ;;
      X-ConfinementFullUnit) fake_bool "$value" && fullunit=yes || fullunit=no ;;
      X-ConfinementPackages) if [ -z "$value" ]; then packages=(); else packages+=($value); fi ;;
      X-ConfinementBinSh) binsh_set=yes; binsh=$value ;;
      ExecStart | ExecStartPre | ExecStartPost | ExecReload | ExecStop | ExecStopPost | ExecCondition)
        exec_values+=("$value") ;;
      PrivateMounts | MountAPIVFS | PrivateDevices | PrivateTmp | PrivateUsers | ProtectControlGroups | \
        ProtectKernelModules | ProtectKernelTunables)
        if [ -n "$value" ]; then unitset[$key]=$value; else unset "unitset[$key]"; fi ;;
    esac
  done <<<"$text"
  [ "$enable" = yes ] || return 0
  [ -n "$mode" ] || mode=full-apivfs

  local roots=() binds=() problems=() v w prog resolved sp
  for v in "${exec_values[@]}"; do
    roots+=($(fake_store_paths <<<"$v"))
    # The program, when it is outside the store but resolves into it.
    prog=$(awk '{ print $1 }' <<<"$v")
    prog=${prog#[-@:+!]}; prog=${prog#[-@:+!]}; prog=${prog#[-@:+!]}
    case $prog in
      /nix/store/*) ;;
      /*)
        if resolved=$(fake_resolve "$prog") && [[ $resolved == /nix/store/* ]]; then
          roots+=($(fake_store_paths <<<"$resolved"))
          binds+=("BindReadOnlyPaths=$resolved:$prog")
        fi ;;
    esac
  done
  if [ "$fullunit" = yes ]; then
    for v in "${all_values[@]}"; do roots+=($(fake_store_paths <<<"$v")); done
  fi
  for v in "${packages[@]}"; do
    if [[ $v == /nix/store/* ]]; then
      roots+=($(fake_store_paths <<<"$v"))
    elif resolved=$(fake_resolve "$v") && [[ $resolved == /nix/store/* ]]; then
      roots+=($(fake_store_paths <<<"$resolved"))
    else
      problems+=("X-ConfinementPackages=$v does not resolve into the store")
    fi
  done
  if [ "$binsh_set" = no ]; then
    binsh=$(awk -F= '/^\[/ { s = $0 } s == "[Defaults]" && $1 == "BinSh" { v = $2 } END { print v }' \
      "$FAKE_ROOT/etc/systemd/nix-confinement-generator.conf" 2>/dev/null || true)
    [ -n "$binsh" ] || binsh=/bin/sh
    if resolved=$(fake_resolve "$binsh") && [[ $resolved == /nix/store/* ]]; then binsh=$resolved; else binsh=; fi
  elif [ -n "$binsh" ]; then
    if resolved=$(fake_resolve "$binsh") && [[ $resolved == /nix/store/* ]]; then
      binsh=$resolved
    else
      problems+=("X-ConfinementBinSh=$binsh does not resolve into the store")
      binsh=
    fi
  fi
  [ -z "$binsh" ] || roots+=($(fake_store_paths <<<"$binsh"))

  mapfile -t roots < <(printf '%s\n' "${roots[@]}" | sed '/^$/d' | sort -u)
  for sp in "${roots[@]}"; do
    nix-store --store "local?root=$FAKE_STORE_ROOT" --check-validity "$sp" 2>/dev/null ||
      problems+=("$sp is not a valid store path in /nix/var/nix/db/db.sqlite")
  done

  echo "# FAKE nix-confinement-generator drop-in (tests/e2e/lib/fake-generator.sh) for $unit"
  if [ ${#problems[@]} -gt 0 ]; then
    local reason
    reason=$(printf '%s; ' "${problems[@]}")
    reason=${reason%; }
    echo "[Unit]"
    echo "Description=BLOCKED by nix-confinement-generator: $reason"
    echo "AssertPathExists=/nix-confinement-generator/blocked/${reason//[^A-Za-z0-9._\/-]/_}"
    return 0
  fi

  local api=yes
  [ "$mode" = full-apivfs ] || api=no
  echo "[Service]"
  echo "RootDirectory=/run/confinement/%n"
  echo "RuntimeDirectory=confinement/%n"
  echo "InaccessiblePaths=-+/run/confinement/%n"
  echo "ReadOnlyPaths=+/"
  [ -n "${unitset[PrivateMounts]:-}" ] || echo "PrivateMounts=yes"
  for key in MountAPIVFS PrivateDevices PrivateTmp PrivateUsers ProtectControlGroups ProtectKernelModules ProtectKernelTunables; do
    [ -n "${unitset[$key]:-}" ] || echo "$key=$api"
  done
  [ -z "$binsh" ] || echo "BindReadOnlyPaths=$binsh:/bin/sh"
  local ptmp=${unitset[PrivateTmp]:-$api}
  if ! fake_bool "$ptmp"; then
    echo "InaccessiblePaths=-+/tmp"
    echo "InaccessiblePaths=-+/var/tmp"
  fi
  for v in "${binds[@]}"; do echo "$v"; done
  if [ ${#roots[@]} -gt 0 ]; then
    for sp in $(nix-store --store "local?root=$FAKE_STORE_ROOT" -q --requisites "${roots[@]}" | sort); do
      if [ -L "$(fake_host "$sp")" ]; then
        echo "BindReadOnlyPaths=$(fake_resolve "$sp"):$sp"
      else
        echo "BindReadOnlyPaths=$sp"
      fi
    done
  fi
}

# fake_generator_install ROOT STORE_ROOT GENERATOR_RELPATH
fake_generator_install() {
  FAKE_ROOT=$1
  FAKE_STORE_ROOT=$2
  local dst=$FAKE_ROOT/usr/lib/ncg-e2e-fake f unit text
  rm -rf "$dst"
  mkdir -p "$dst"
  for f in "$FAKE_ROOT"/etc/systemd/system/ncg-*.service "$FAKE_ROOT"/usr/lib/systemd/system/ncg-*.service; do
    [ -f "$f" ] || continue
    unit=${f##*/}
    [ ! -d "$dst/$unit.d" ] || continue
    text=$(fake_dropin "$unit")
    [ -n "$text" ] || continue
    mkdir -p "$dst/$unit.d"
    printf '%s\n' "$text" >"$dst/$unit.d/zz-confinement.conf"
    echo "fake: $unit"
  done
  mkdir -p "$(dirname "$FAKE_ROOT/$3")"
  cat >"$FAKE_ROOT/$3" <<'EOF'
#!/bin/sh
# FAKE nix-confinement-generator: e2e development fallback only
# (NCG_E2E_FAKE_GENERATOR=1). Copies drop-ins precomputed on the host.
set -e
[ -d /usr/lib/ncg-e2e-fake ] || exit 0
cp -R /usr/lib/ncg-e2e-fake/. "$1"/
EOF
  chmod 0755 "$FAKE_ROOT/$3"
}
