#!@BB@/bin/sh
# ncg-check: the access-level checker of the nix-confinement-generator e2e
# suite. It runs INSIDE a confined service, with nothing but its own closure
# (this script and busybox), walks / and classifies every path:
#
#   none(0) < readable(1) < special(2) < sticky(3) < writable(4)
#
# readable: a symlink, a directory that can be listed, a file that can be read
# special:  a device, FIFO or socket that can be written (by its mode), and the
#           special file systems (/proc, /sys), which are not descended into
# sticky:   a writable directory with the sticky bit
# writable: a directory in which a file can be created, a regular file that
#           can be opened for writing (or access(2) says so)
#
# The semantics are those of nixpkgs nixos/tests/systemd-confinement
# (checkperms.py): every path must be AT MOST the level of the nearest
# listed ancestor (the root's default is writable for uid 0 and readable
# otherwise), every listed path must exist, a special file system must be
# listed as special. Written from scratch for busybox sh.
#
# Usage: ncg-check [OUTDIR]          (default /out)
# Input:  OUTDIR/expect     required, one directive a line:
#           uid root|nonroot
#           level PATH LEVEL     PATH and what is below it: at most LEVEL
#           level PATH =LEVEL    PATH itself: exactly LEVEL (below: at most)
#           absent PATH          PATH must not exist (not even as a symlink)
#           present PATH         PATH must exist
#           skip-walk REASON     do not walk / (REASON required; no `level`)
#         Unless it says skip-walk, it must list / itself and every entry
#         of / (`level`): what the root holds, and at which level, is
#         stated, never left to the default (for root, writable).
#         OUTDIR/inside.sh  optional, sourced after the walk (helpers below)
# Output: OUTDIR/verdict    first line PASS or FAIL, then one line a problem
#         OUTDIR/levels     every walked path with its level
# Exit status 0 on PASS, 1 on FAIL. OUTDIR itself is the harness's channel:
# it is accepted as writable and not walked.

PATH=@BB@/bin
export PATH
umask 022

OUT=${1:-/out}
OUT=${OUT%/}
EXPECT=$OUT/expect
LEVELS=$OUT/levels
FAILS=
MAP=
SEEN=' '

fail() {
  FAILS="$FAILS
$*"
  echo "ncg-check: FAIL: $*" >&2
}

note() { echo "ncg-check: $*" >&2; }

level_num() {
  case $1 in
    none) N=0 ;; readable) N=1 ;; special) N=2 ;; sticky) N=3 ;; writable) N=4 ;;
    *) N= ; return 1 ;;
  esac
}

level_name() {
  case $1 in
    0) NAME=none ;; 1) NAME=readable ;; 2) NAME=special ;; 3) NAME=sticky ;; 4) NAME=writable ;;
    *) NAME="?$1" ;;
  esac
}

abspath() {
  case $1 in
    /*) P=$1 ;;
    *) P=/$1 ;;
  esac
  [ "$P" = / ] || P=${P%/}
}

# lookup PATH: is PATH listed? Sets L_NUM and L_EXACT (yes/no).
lookup() {
  local path num exact
  while read -r path num exact; do
    [ -n "$path" ] || continue
    if [ "$path" = "$1" ]; then
      L_NUM=$num
      L_EXACT=$exact
      SEEN="$SEEN$1 "
      return 0
    fi
  done <<EOF
$MAP
EOF
  return 1
}

# statfs type (hex) of a path, empty if it cannot be stat'ed.
fstype() { stat -f -c %t "$1" 2>&- || true; }

# Is PATH a special (kernel API) file system: proc, sysfs, cgroup?
# /sys in a container is a tmpfs with sysfs mounted below it, so /sys counts
# when /sys/kernel is sysfs (as checkperms.py looks at /sys/kernel/notes).
is_special_fs() {
  local t
  t=$(fstype "$1")
  case $t in 9fa0 | 62656572 | 27e0eb | 63677270) return 0 ;; esac
  if [ "$1" = /sys ]; then
    t=$(fstype /sys/kernel)
    [ "$t" = 62656572 ] && return 0
  fi
  return 1
}

# file_writable FILE: can FILE be written? Real attempts only: busybox's
# `test -w` is not access(2) (it answers yes for root even on a read-only
# mount). Opening for appending writes nothing. On a writable mount, a
# running executable fails that open with ETXTBSY: then setting its times to
# its own times (a no-op that needs a writable mount, and ownership or root)
# decides.
file_writable() {
  local err=$OUT/.ncg-check-err msg=
  if ( exec 3>>"$1" ) 2>"$err"; then
    return 0
  fi
  read -r msg <"$err" || true
  case $msg in
    *[Bb]usy*) touch -c -r "$1" "$1" 2>&- && return 0 ;;
  esac
  return 1
}

# classify PATH: sets A to the actual level of PATH.
classify() {
  local p=$1 probe w
  if [ -L "$p" ]; then
    A=1
  elif [ -d "$p" ]; then
    probe="$p/.ncg-check-probe.$$"
    w=0
    if ( : >"$probe" ) 2>&-; then
      w=1
      rm -f "$probe"
    fi
    if [ $w = 1 ]; then
      if [ -k "$p" ]; then A=3; else A=4; fi
    elif [ -r "$p" ]; then
      A=1
    else
      A=0
    fi
  elif [ -f "$p" ]; then
    A=0
    [ -r "$p" ] && A=1
    if file_writable "$p"; then A=4; fi
  elif [ -e "$p" ]; then
    A=0
    [ -r "$p" ] && A=1
    [ -w "$p" ] && A=2
  else
    A=0
  fi
}

# check PATH MAX EXACT: classify PATH and compare.
check() {
  classify "$1"
  level_name "$A"
  echo "$NAME $1" >>"$LEVELS"
  if [ "$A" -gt "$2" ]; then
    local want=$NAME details
    level_name "$2"
    details=$(stat -c 'mode %a uid %u gid %g' "$1" 2>&1)
    fail "$1: expected at most $NAME, got $want ($details)"
  elif [ "$3" = yes ] && [ "$A" != "$2" ]; then
    local got=$NAME
    level_name "$2"
    fail "$1: expected exactly $NAME, got $got"
  fi
}

# walk DIR MAX EXACT
walk() {
  local d=$1 lvl=$2 pre e sub ex
  check "$d" "$lvl" "$3"
  [ -r "$d" ] && [ -x "$d" ] || return 0
  pre=${d%/}
  for e in "$pre"/* "$pre"/.[!.]* "$pre"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    sub=$lvl
    ex=no
    if lookup "$e"; then
      sub=$L_NUM
      ex=$L_EXACT
    elif [ "$d" = / ] && [ "$e" != "$OUT" ]; then
      fail "$e: in / but not listed in expect (every entry of / is listed with its level)"
    fi
    if [ "$e" = "$OUT" ]; then
      echo "harness $e" >>"$LEVELS"
    elif [ ! -L "$e" ] && [ -d "$e" ] && is_special_fs "$e"; then
      echo "special-fs $e" >>"$LEVELS"
      [ "$sub" = 2 ] && [ "$sub" != "$lvl" ] ||
        fail "$e: unexpected special file system (list it as special)"
    elif [ ! -L "$e" ] && [ -d "$e" ]; then
      walk "$e" "$sub" "$ex"
    else
      check "$e" "$sub" "$ex"
    fi
  done
}

# ---- helpers for inside.sh ---------------------------------------------------

expect_absent() {
  [ -e "$1" ] || [ -L "$1" ] && fail "$1 exists, expected absent"
  return 0
}

expect_present() {
  [ -e "$1" ] || [ -L "$1" ] || fail "$1 does not exist"
  return 0
}

# expect_content FILE TEXT: the file's content (trailing newlines stripped)
expect_content() {
  local got
  if got=$(cat "$1" 2>&1); then
    [ "$got" = "$2" ] || fail "$1: content '$got', expected '$2'"
  else
    fail "$1: cannot read: $got"
  fi
}

# expect_output TEXT CMD ARGS...: CMD succeeds and prints TEXT (trailing
# newlines stripped, as with $(...)).
expect_output() {
  local want=$1 got
  shift
  if got=$("$@" 2>&1); then
    [ "$got" = "$want" ] || fail "$*: printed '$got', expected '$want'"
  else
    fail "$*: failed (status $?): $got"
  fi
}

# expect_fail CMD ARGS...: CMD must fail.
expect_fail() {
  local got
  if got=$("$@" 2>&1); then
    fail "$*: succeeded, expected failure (printed '$got')"
  fi
  return 0
}

# expect_no_write PATH: opening PATH for writing (a file) or creating a file
# in it (a directory) must fail, whoever we are.
expect_no_write() {
  if [ -d "$1" ]; then
    if ( : >"$1/.ncg-check-write.$$" ) 2>&-; then
      rm -f "$1/.ncg-check-write.$$"
      fail "$1: created a file in it"
    fi
  elif file_writable "$1"; then
    fail "$1: opened it for writing"
  fi
  return 0
}

# write_result PATH: try to write PATH for real and print the outcome: OK
# (the write got through; a probe file is removed again), else the error
# (`Read-only file system`, ...). A directory: create a file in it. Any other
# file: open it for appending (writes nothing); a running executable fails
# that with ETXTBSY before the mount is looked at, so then set its times to
# its own times (a no-op that needs a writable mount).
write_result() {
  local err=$OUT/.ncg-check-err msg=
  if [ -d "$1" ] && [ ! -L "$1" ]; then
    if ( : >"$1/.ncg-check-write.$$" ) 2>"$err"; then
      rm -f "$1/.ncg-check-write.$$"
      echo OK
      return 0
    fi
  elif ( exec 3>>"$1" ) 2>"$err"; then
    echo OK
    return 0
  else
    read -r msg <"$err" || true
    case $msg in
      *[Bb]usy*)
        if touch -c -r "$1" "$1" 2>"$err"; then
          echo OK
          return 0
        fi
        ;;
    esac
  fi
  read -r msg <"$err" || true
  rm -f "$err"
  msg=${msg##*: }
  echo "${msg:-failed}"
}

# list_writable_targets DIR...: every directory and regular file at or below
# each DIR (symlinks are not followed: what they point to is listed where it
# is), one a line.
list_writable_targets() {
  find "$@" \( -type d -o -type f \) -print
}

# probe_writes LIST RESULTS: write_result for every path in LIST (one a
# line); RESULTS gets one line a path: `<outcome>|<path>`.
probe_writes() {
  local p
  : >"$2"
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    echo "$(write_result "$p")|$p" >>"$2"
  done <"$1"
}

# expect_erofs_all RESULTS: every probed write failed with EROFS (a read-only
# mount), not merely with some error.
expect_erofs_all() {
  local r p n=0
  while IFS='|' read -r r p; do
    n=$((n + 1))
    [ "$r" = "Read-only file system" ] || fail "$p: write gave '$r', expected 'Read-only file system'"
  done <"$1"
  [ "$n" -gt 0 ] || fail "$1: nothing was probed"
}

# ---- main ------------------------------------------------------------------

: >"$LEVELS" || { echo "ncg-check: cannot write $LEVELS" >&2; exit 2; }
rm -f "$OUT/verdict" "$OUT/.ncg-check-err"
UID_NOW=$(id -u)
note "running as uid $UID_NOW gid $(id -g), root entries: $(ls -A / | tr '\n' ' ')"

SKIP_WALK=
if [ ! -f "$EXPECT" ]; then
  fail "no $EXPECT: a case states what its service may see, or says why not (skip-walk REASON)"
else
  while read -r kw a b; do
    case $kw in
      '' | '#'*) ;;
      skip-walk)
        [ -n "$a" ] || fail "expect: skip-walk needs a reason"
        SKIP_WALK=yes
        ;;
      uid)
        case $a in
          root) [ "$UID_NOW" = 0 ] || fail "uid is $UID_NOW, expected 0" ;;
          nonroot) [ "$UID_NOW" != 0 ] || fail "uid is 0, expected non-root" ;;
          *) fail "expect: bad uid '$a'" ;;
        esac
        ;;
      level)
        abspath "$a"
        ex=no
        case $b in =*) ex=yes; b=${b#=} ;; esac
        case "$MAP
" in
          *"
$P "*) fail "expect: $P is listed twice" ;;
        esac
        if level_num "$b"; then
          MAP="$MAP
$P $N $ex"
        else
          fail "expect: bad level '$b' for $a"
        fi
        ;;
      absent) abspath "$a"; expect_absent "$P" ;;
      present) abspath "$a"; expect_present "$P" ;;
      *) fail "expect: unknown directive '$kw'" ;;
    esac
  done <"$EXPECT"

  if [ -n "$SKIP_WALK" ]; then
    [ -z "$MAP" ] || fail "expect: skip-walk with level directives"
  elif lookup /; then
    walk / "$L_NUM" "$L_EXACT"
  else
    fail "expect: the level of / is not listed (level / LEVEL)"
  fi

  while read -r path num exact; do
    [ -n "$path" ] || continue
    case $SEEN in
      *" $path "*) ;;
      *) fail "expected $path to exist, but it was nowhere to be found" ;;
    esac
  done <<EOF
$MAP
EOF
fi

if [ -f "$OUT/inside.sh" ]; then
  . "$OUT/inside.sh"
fi

rm -f "$OUT/.ncg-check-err"
if [ -z "$FAILS" ]; then
  echo PASS >"$OUT/verdict.tmp"
  mv -f "$OUT/verdict.tmp" "$OUT/verdict"
  note PASS
  exit 0
fi
printf 'FAIL%s\n' "$FAILS" >"$OUT/verdict.tmp"
mv -f "$OUT/verdict.tmp" "$OUT/verdict"
note FAIL
exit 1
