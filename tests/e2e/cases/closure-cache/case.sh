cache=/run/nix-confinement-generator/closures
modes=$(in_ct stat -c '%a %U' "$cache" /run/nix-confinement-generator) ||
  die "no closure cache at $cache after boot and daemon-reload"
[ "$modes" = "$(printf '600 root\n700 root')" ] || die "cache, directory: $modes"
ok "the cache is there: file 0600, directory 0700, root's"
stamp() { in_ct stat -c '%i %Y.%y' "$cache"; }
before=$(stamp)
ctl daemon-reload
[ "$(stamp)" = "$before" ] || die "a daemon-reload with every closure cached rewrote the cache"
ok "daemon-reload found every closure in it and left it as it was"
default_case
in_ct rm "$cache"
ctl daemon-reload
in_ct test -s "$cache" || die "the cache was not written again after it was removed"
ok "written again after it was removed"
rm -f "$NCG_OUT/verdict"
default_case
