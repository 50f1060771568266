# unconfined, in the container: the store paths the confined service probed
grep '^/nix/store/' /out/@CASE@/targets >/out/@CASE@/control/targets
probe_writes /out/@CASE@/control/targets /out/@CASE@/control/results
