#!/usr/bin/env bash
# The README's first command: builds a small real Nix store and a few
# annotated units under a scratch root, runs the generator on it with --root,
# and shows the drop-ins it writes and one `explain`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nix-store || ! [ -x /bin/busybox ]; then
    echo "== installing nix-bin and busybox-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin busybox-static >/dev/null
fi

echo "== building the generator"
(cd "$repo" && cargo build --release --quiet)
generator="$repo/target/release/nix-confinement-generator"

demo=${DEMO_DIR:-/tmp/nix-confinement-generator-demo}
rm -rf "$demo"
root="$demo/root"
out="$demo/out"
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd/system" "$out"
store="local?root=$root"

echo "== building a real Nix store under $root"
cp /bin/busybox "$demo/busybox"
busybox=$(nix-store --store "$store" --add "$demo/busybox")
build() {
    nix-build --store "$store" --no-out-link --quiet \
        --option substituters '' --option sandbox false --option build-users-group '' \
        --option sandbox-paths '/bin /lib /lib64 /usr' \
        "$here/demo.nix" --argstr busybox "$busybox" -A "$1"
}
hello=$(build hello)
echo_server=$(build echo-server)
echo "   busybox $busybox"
echo "   hello   $hello  (refers to: $(nix-store --store "$store" -q --references "$hello" | xargs -n1 basename | tr '\n' ' '))"

# A plain annotated unit.
cat > "$root/etc/systemd/system/hello.service" <<UNIT
[Unit]
Description=Says hello from its Nix store closure

[Service]
Type=oneshot
ExecStart=$hello/bin/demo-hello
X-ConfinementEnable=yes
UNIT

# A distribution's unit in /usr/lib, annotated by an administrator's drop-in
# (what `systemctl edit echo@.service` writes).
cat > "$root/usr/lib/systemd/system/echo@.service" <<UNIT
[Unit]
Description=Echo server for connection %i

[Service]
ExecStart=$echo_server/bin/demo-echo
StandardInput=socket
UNIT
mkdir -p "$root/etc/systemd/system/echo@.service.d"
cat > "$root/etc/systemd/system/echo@.service.d/override.conf" <<UNIT
[Service]
X-ConfinementEnable=yes
X-ConfinementMode=chroot-only
UNIT

# A unit naming a store path the database does not know: blocked.
cat > "$root/etc/systemd/system/broken.service" <<UNIT
[Service]
ExecStart=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-not-built/bin/daemon
X-ConfinementEnable=yes
UNIT

# An unannotated unit: never touched.
cat > "$root/etc/systemd/system/plain.service" <<UNIT
[Service]
ExecStart=$hello/bin/demo-hello
UNIT

echo
echo "== $generator --root $root $out"
status=0
SYSTEMD_LOG_TARGET=console "$generator" --root "$root" "$out" || status=$?
echo "   exit status $status (1: a unit was blocked)"
for file in $(cd "$out" && find . -type f | sort); do
    echo
    echo "---- $out/${file#./}"
    cat "$out/$file"
done
echo
echo "== $generator --root $root explain hello.service"
"$generator" --root "$root" explain hello.service
echo
echo "== $generator --root $root check"
"$generator" --root "$root" check || true
