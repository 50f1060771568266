# The store is bound read-write into the container here (a private copy).
# A path valid in the database is missing from the store at one reload
# (the generator notes it is no symlink), then becomes a symlink to a
# writable host directory before the next reload. Bound through the
# store's read-only view, systemd would follow the link on the host and
# bind the host's directory writable; per path, it must be bound from its
# resolved target, read-only, as a symlink store path always is. A closure
# view shows it as the symlink it is, and its target does not exist inside.
path=$NCG_S_FOOBAR
aside=/nix/store/.ncg-e2e-foobar-aside
restore() {
  in_ct rm -f "$path"
  in_ct mv "$aside" "$path" 2>/dev/null || true
  in_ct rm -rf /etc/ncg-hostdir
  ctl daemon-reload
}
trap restore EXIT

in_ct mv "$path" "$aside"
ctl daemon-reload
ok "$path is missing; reloaded"

in_ct mkdir -p /etc/ncg-hostdir
in_ct sh -c 'echo "host directory" >/etc/ncg-hostdir/file'
in_ct ln -s /etc/ncg-hostdir "$path"
ctl daemon-reload
ok "$path is now a symlink to /etc/ncg-hostdir (writable in the container); reloaded"

echo "$NCG_BINDING" >"$NCG_OUT/binding"
default_case
dropin=$(ctl cat -- "$NCG_UNIT")
if [ "$NCG_BINDING" = per-path ]; then
  case $dropin in
    *"BindReadOnlyPaths=/etc/ncg-hostdir:$path"*) ok "bound read-only from its target" ;;
    *) die "the drop-in does not bind $path read-only from /etc/ncg-hostdir:
$dropin" ;;
  esac
else
  case $dropin in
    *ncg-hostdir*) die "the drop-in names the host directory:
$dropin" ;;
  esac
  ok "the view shows $path as the symlink it is; its target does not exist inside (inside.sh)"
fi
in_ct test -w /etc/ncg-hostdir/file || die "the host directory is not writable outside the service (the test proves nothing)"
ok "outside the service the host directory stays writable"
