# Runs in the boot where the store is a private copy bound read-write.
gone=("$NCG_S_SERVE" "$NCG_S_GREETING" "$NCG_S_FOOBAR")
aside=/nix/store/.ncg-e2e-gc-aside
newpath=/nix/store/00000000000000000000000000000000-ncg-e2e-gc-new
restore() {
  ctl stop "$NCG_UNIT" || true
  local p
  for p in "${gone[@]}"; do
    if in_ct test -e "$aside/${p##*/}"; then
      in_ct rm -rf "$p"
      in_ct mv "$aside/${p##*/}" "$p"
    fi
  done
  in_ct rm -rf "$aside" "$newpath" /etc/ncg-gc-host
}
trap restore EXIT
closure=$(names_of $(closure_of BB SERVE GREETING FOOBAR TARGET))
# what_it_sees LABEL CMD...: run CMD in the container, report its outcome
what_it_sees() {
  local label=$1 out rc=0
  shift
  out=$(in_ct "$@" 2>&1) || rc=$?
  say "  seen: $label: status $rc: $(printf '%s' "$out" | head -c 200 | tr '\n' ' ')"
  SEEN_RC=$rc SEEN_OUT=$out
}

expect_start_ok "$NCG_UNIT"
pid=$(main_pid "$NCG_UNIT")
root=/proc/$pid/root
d=$(view_digest "$NCG_UNIT")
[ "$(store_names_seen_by "$NCG_UNIT")" = "$closure" ] || die "the service does not see its closure"
[ "$(in_ct cat "$root$NCG_S_GREETING")" = "hello from the store" ] || die "cannot read $NCG_S_GREETING"
ok "the service runs on the view $d and has read $NCG_S_GREETING (its other paths not yet)"

# Garbage-collected: deleted from the store (a copy kept aside for the end).
in_ct mkdir -p "$aside"
for p in "${gone[@]}"; do
  in_ct cp -a "$p" "$aside/"
  in_ct rm -rf "$p"
  in_ct test ! -e "$p" || die "$p is still in the store"
done
in_ct mkdir "$newpath"
ok "deleted from the store: ${gone[*]##*/}; created: ${newpath##*/}"

say "what the running service sees now:"
what_it_sees "ls -A /nix/store" ls -A "$root/nix/store"
got=$(printf '%s\n' "$SEEN_OUT" | sort)
[ -z "$(comm -13 <(printf '%s\n' "$closure") <(printf '%s\n' "$got"))" ] ||
  die "names outside the closure appear: $(comm -13 <(printf '%s\n' "$closure") <(printf '%s\n' "$got") | tr '\n' ' ')"
ok "it lists nothing outside the closure, not ${newpath##*/}"
what_it_sees "a deleted file it had read ($NCG_S_GREETING)" cat "$root$NCG_S_GREETING"
what_it_sees "a deleted file never read ($NCG_S_FOOBAR)" cat "$root$NCG_S_FOOBAR"
what_it_sees "a deleted directory ($NCG_S_SERVE)" ls -A "$root$NCG_S_SERVE"
what_it_sees "a file in it never looked up ($NCG_S_SERVE/bin/ncg-serve)" cat "$root$NCG_S_SERVE/bin/ncg-serve"
[ "$SEEN_RC" != 0 ] || die "$NCG_S_SERVE/bin/ncg-serve can still be read after its deletion"
what_it_sees "a path of the closure still in the store ($NCG_S_TARGET)" cat "$root$NCG_S_TARGET"
[ "$SEEN_OUT" = "got me" ] || die "$NCG_S_TARGET cannot be read"
for target in "$root/nix/store/ncg-e2e-new" "$root$NCG_S_SERVE/new"; do
  what_it_sees "write $target" mkdir "$target"
  case $SEEN_OUT in *"Read-only file system"*) ;; *) die "mkdir $target: $SEEN_OUT" ;; esac
done
ok "writes fail with EROFS"

# The deleted names taken by a symlink to a writable host directory, or a
# directory of other content.
in_ct mkdir -p /etc/ncg-gc-host
in_ct sh -c 'echo "host secret" >/etc/ncg-gc-host/file'
in_ct ln -s /etc/ncg-gc-host "$NCG_S_SERVE"
in_ct ln -s /etc/ncg-gc-host "$NCG_S_GREETING"
in_ct mkdir "$NCG_S_FOOBAR"
in_ct sh -c "echo 'host secret' >$NCG_S_FOOBAR/file"
say "after the deleted names were taken by a symlink to /etc/ncg-gc-host and a directory:"
for path in "$NCG_S_SERVE/file" "$NCG_S_GREETING" "$NCG_S_GREETING/file" "$NCG_S_FOOBAR" "$NCG_S_FOOBAR/file"; do
  what_it_sees "cat $path" cat "$root$path"
  case $SEEN_OUT in *"host secret"*) die "$path shows the host's file" ;; esac
done
what_it_sees "ls -A $NCG_S_SERVE" ls -A "$root$NCG_S_SERVE"
case $SEEN_OUT in *file*) die "$NCG_S_SERVE shows the host's directory" ;; esac
ok "nothing of the host's directory or the new content shows through"
in_ct rm -rf "$NCG_S_SERVE" "$NCG_S_GREETING" "$NCG_S_FOOBAR"

# A new view while closure paths are missing: refused, and the view unit
# names the first missing path.
ctl stop "$NCG_UNIT"
expect_view_stopped "$d"
expect_refused_because "$NCG_UNIT" "$NCG_OUT" "Dependency failed" "$(printf '%s\n' "${gone[@]##*/}" | sort | head -n1): in the store: No such file or directory"

for p in "${gone[@]}"; do in_ct mv "$aside/${p##*/}" "$p"; done
expect_start_ok "$NCG_UNIT"
[ "$(store_names_seen_by "$NCG_UNIT")" = "$closure" ] || die "the service does not see its closure"
[ "$(in_ct cat "/proc/$(main_pid "$NCG_UNIT")/root$NCG_S_GREETING")" = "hello from the store" ] || die "cannot read $NCG_S_GREETING"
ok "with the paths back, it starts again on its whole closure"
