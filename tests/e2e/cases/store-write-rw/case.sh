# outside the service, in the container, the store is writable
in_ct /bin/sh -c ': >>"$1"' sh "$NCG_S_GREETING" || die "cannot open $NCG_S_GREETING for writing in the container"
in_ct /bin/sh -c 'touch /nix/store/.ncg-e2e-probe && rm /nix/store/.ncg-e2e-probe' || die "/nix/store is not writable in the container"
in_ct /bin/sh -c 'mkdir "$1/.ncg-e2e-probe" && rmdir "$1/.ncg-e2e-probe"' sh "$NCG_S_BB" || die "$NCG_S_BB is not writable in the container"
ok "the store is writable in the container (outside the service)"

# the unconfined control: the checker sees the same paths writable
rc=0
start_unit ncg-store-write-rw-control.service || rc=$?
expect_not_confined ncg-store-write-rw-control.service
expect_verdict "$NCG_OUT/control" FAIL
n=$(grep -c 'opened it for writing\|created a file in it' "$NCG_OUT/control/verdict" || true)
[ "$n" = 5 ] || die "the control saw $n writable paths, expected 5"
ok "control: the unconfined checker can write all 5 paths (so the check works)"

default_case
