#!/usr/bin/env bash
# Maintainer tool: (re)writes the 12 parametrised cases (see tests/e2e/README.md)
# under tests/e2e/cases/matrix-*: user in {root, dynamic, static} x PrivateTmp in
# {yes, no} x mode in {chroot-only, full-apivfs}. The expected maps are those
# of nixpkgs nixos/tests/systemd-confinement (at most the listed level), with
# bin, nix, tmp and var/tmp exact, plus checks that the host's files are not
# there. The checker also wants / and every entry of it listed: the empty
# directories systemd makes in the root (dev, etc, proc, root, sys, usr, var
# in chroot-only; etc, root, usr, var in full-apivfs) are listed exactly, as
# measured with systemd 252 and 257.
# As in that test, chroot-only cases set PrivateTmp= only to turn it on and
# full-apivfs cases only to turn it off (so each mode's default is tested),
# and full-apivfs is the default mode (no X-ConfinementMode= line).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../cases"
for user in root dynamic static; do
  for mode in chroot-only full-apivfs; do
    for tmp in privatetmp noprivatetmp; do
      name=matrix-$user-$mode-$tmp
      rm -rf "$name"
      mkdir -p "$name/files/etc/systemd/system" "$name/out"
      case $user in
        root) who="root"; uid=root; userlines= ;;
        dynamic) who="DynamicUser=yes"; uid=nonroot; userlines=$'DynamicUser=yes\n' ;;
        static) who="static User=/Group="; uid=nonroot; userlines=$'User=ncg-testuser\nGroup=ncg-testgroup\n' ;;
      esac
      modeline= tmpline=
      if [ "$mode" = chroot-only ]; then
        modeline=$'X-ConfinementMode=chroot-only\n'
        [ "$tmp" = privatetmp ] && tmpline=$'PrivateTmp=yes\n'
      else
        [ "$tmp" = noprivatetmp ] && tmpline=$'PrivateTmp=no\n'
      fi
      withtmp="with PrivateTmp"
      [ "$tmp" = privatetmp ] || withtmp="without PrivateTmp"
      echo "$who, $mode confinement $withtmp" >"$name/description"
      cat >"$name/files/etc/systemd/system/ncg-$name.service" <<EOF
[Unit]
Description=e2e @CASE@: $who, $mode $withtmp

[Service]
Type=oneshot
ExecStart=@CHECK@/bin/ncg-check
BindPaths=/out/@CASE@:/out
${userlines}${tmpline}X-ConfinementEnable=yes
${modeline}X-ConfinementBinSh=@BB@/bin/sh
EOF
      {
        echo "# Access map (ncg-check): nixpkgs systemd-confinement, $who, $mode $withtmp"
        echo "uid $uid"
        echo "level / =readable"
        echo "level bin =readable"
        echo "level nix =readable"
        echo "level etc =readable"
        echo "level usr =readable"
        echo "level var readable"
        if [ "$uid" = root ]; then
          echo "level root =readable"
        else
          echo "level root =none"
        fi
        if [ "$mode" = chroot-only ]; then
          echo "level run readable"
          echo "level dev =readable"
          echo "level proc =readable"
          echo "level sys =readable"
        elif [ "$uid" = root ]; then
          echo "level run writable"
          echo "level proc special"
          echo "level sys special"
          echo "level dev writable"
        else
          echo "level run sticky"
          echo "level proc special"
          echo "level sys special"
          echo "level dev special"
          echo "level dev/shm sticky"
          echo "level dev/mqueue sticky"
        fi
        if [ "$tmp" = privatetmp ]; then
          echo "level tmp =sticky"
          echo "level var/tmp =sticky"
        fi
        echo "# the host's files are not there"
        echo "absent etc/passwd"
        echo "absent etc/os-release"
        echo "absent usr/bin"
        echo "absent var/lib/dpkg"
      } >"$name/out/expect"
    done
  done
done
