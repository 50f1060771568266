#!/usr/bin/env python3
"""Builds (or reuses) the synthetic system of the generation benchmark (benches/generation/README.md).

A root directory holding
  * a real Nix database (`nix/var/nix/db/db.sqlite`) of N store paths with
    about 10 references each, loaded by Nix itself with
    `nix-store --store local?root=DIR --load-db` (no SQL is ever written here);
  * unit files under `etc/systemd/system` and `usr/lib/systemd/system`, with
    drop-ins, `.wants/` links, aliases and masks, `A` of the services
    annotated with `X-ConfinementEnable=yes` (a fifth of those with
    `X-ConfinementFullUnit=yes` and store paths in `Environment=`);
  * the store paths of every annotated closure created on disk (directories,
    and a few symlinks, so the generator's lstat sees real entries);
  * `manifest.json` beside the root: per annotated unit, its roots (the store
    paths the generator must start from, derived from the same model that
    wrote the unit files) and the closure size the graph model predicts.

The graph is layered like a real system: a base of libc-like paths that
almost everything references, then layers of libraries, then applications,
configuration files and scripts. A path references paths of lower layers
near its own "position" (packages of one ecosystem depend on each other),
plus a few very popular libraries, so that closures are a few hundred paths
and overlap heavily between services, as they do on a real machine.

Everything is deterministic from the parameters; the cache directory name is
a hash of the parameters and of this script, so changing either rebuilds.

Usage: build_system.py --cache DIR --annotated N [--units N] [--paths N]
       prints the system directory on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import bisect
import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"
STORE = "/nix/store"
FORMAT_VERSION = 3  # bump when the model changes in a way the hash of this file would not show


def log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Names

BASE_NAMES = [
    "glibc-2.39-52", "gcc-13.2.0-lib", "libgcc-13.2.0", "libxcrypt-4.4.36",
    "bash-5.2p26", "coreutils-9.5", "zlib-1.3.1", "openssl-3.0.14",
    "xz-5.4.6", "bzip2-1.0.8", "acl-2.3.2", "attr-2.5.2", "ncurses-6.4",
    "readline-8.2p10", "libcap-2.70-lib", "util-linux-minimal-2.39.4-lib",
    "gmp-with-cxx-6.3.0", "libffi-3.4.6", "expat-2.6.2", "pcre2-10.43",
    "libidn2-2.3.7", "libunistring-1.2", "sqlite-3.45.3", "tzdata-2024a",
    "iana-etc-20240318", "mailcap-2.1.53", "nss-cacert-3.98", "keyutils-1.6.3-lib",
    "krb5-1.21.2-lib", "e2fsprogs-1.47.0", "libseccomp-2.5.5-lib", "lz4-1.9.4-lib",
    "zstd-1.5.6", "libgpg-error-1.49", "libgcrypt-1.10.3-lib", "dbus-1.14.10-lib",
    "systemd-minimal-libs-255.9", "libpsl-0.21.5", "brotli-1.1.0-lib", "curl-8.7.1",
]
SYLLABLES = [
    "ar", "ba", "cal", "dor", "el", "fen", "gla", "hu", "in", "jo", "ka", "lum",
    "mo", "nex", "or", "pi", "qua", "ra", "sol", "tri", "ul", "vi", "wex", "yo",
    "zen", "tor", "bit", "net", "pix", "flux", "sync", "log", "mark", "graph",
]
LIB_PREFIX = ["lib", "lib", "lib", "py3.11-", "perl5.38-", "", "", "haskell-", "ocaml-", "lua5.4-"]
OUT_SUFFIX = ["", "", "", "", "-lib", "-bin", "-out", "-man", "-share", "-data"]
APP_KIND = ["", "", "", "-unwrapped", "-wrapped", "-env", "-tools", "-utils"]
CONF_KIND = [".conf", ".toml", ".json", ".yaml", "-config", "-start", "-pre-start",
             "-env", "-etc", "-unit-script", ".ini", "-wrapper"]


def word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts))


def version(rng: random.Random) -> str:
    n = rng.choice([2, 2, 3, 3, 3])
    return ".".join(str(rng.randint(0, 20 if i else 9)) for i in range(n))


def store_hash(rng: random.Random) -> str:
    return "".join(rng.choice(BASE32) for _ in range(32))


# ---------------------------------------------------------------------------
# Graph


class Graph:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.names: list[str] = []
        self.refs: list[list[int]] = []
        self.layer_of: list[int] = []
        self.symlink_to: dict[int, int] = {}

    def closure(self, roots) -> set[int]:
        seen = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(self.refs[n])
        return seen


def layer_sizes(total: int) -> list[int]:
    # base, core libs, libs, frameworks, applications, configs/scripts
    base = len(BASE_NAMES)
    rest = total - base
    fractions = [0.02, 0.08, 0.20, 0.30, 0.40]
    sizes = [int(rest * f) for f in fractions]
    sizes[-1] += rest - sum(sizes)
    return [base] + sizes


# Per layer (index ≥ 1): the window (fraction of the position space, ±) in
# which a path picks references in the layer below, and how many it picks.
WINDOW = [None, 0.040, 0.020, 0.010, 0.006, 0.003]
REFS_BELOW = [None, 6, 7, 8, 8, 4]
REFS_TWO_BELOW = [None, 0, 1, 2, 2, 2]


def build_graph(total: int, seed: int) -> Graph:
    rng = random.Random(seed)
    g = Graph()
    sizes = layer_sizes(total)
    starts = []
    for layer, size in enumerate(sizes):
        starts.append(len(g.paths))
        for j in range(size):
            if layer == 0:
                name = BASE_NAMES[j]
            elif layer in (1, 2, 3):
                name = (rng.choice(LIB_PREFIX) + word(rng, rng.randint(1, 3)) + "-"
                        + version(rng) + rng.choice(OUT_SUFFIX))
            elif layer == 4:
                name = word(rng, rng.randint(1, 3)) + rng.choice(APP_KIND) + "-" + version(rng)
            else:
                name = word(rng, rng.randint(1, 3)) + rng.choice(CONF_KIND)
            g.names.append(name)
            g.paths.append(f"{STORE}/{store_hash(rng)}-{name}")
            g.layer_of.append(layer)
    starts.append(len(g.paths))
    # Names must be unique as store paths (hashes make them so); check anyway.
    assert len(set(g.paths)) == len(g.paths)

    def pick(layer: int, pos: float, window: float) -> int:
        size = sizes[layer]
        p = (pos + rng.uniform(-window, window)) % 1.0
        return starts[layer] + min(size - 1, int(p * size))

    # A few very popular libraries in the core and library layers (openssl,
    # zlib, python, …): a Zipf-like choice among them.
    popular = [starts[1] + i for i in range(0, sizes[1], max(1, sizes[1] // 40))][:40]
    popular += [starts[2] + i for i in range(0, sizes[2], max(1, sizes[2] // 40))][:40]
    zipf_weights = [1.0 / (i + 1) for i in range(len(popular))]
    cum = []
    acc = 0.0
    for w in zipf_weights:
        acc += w
        cum.append(acc)

    def pick_popular() -> int:
        return popular[bisect.bisect_left(cum, rng.random() * acc)]

    for layer, size in enumerate(sizes):
        for j in range(size):
            n = starts[layer] + j
            refs: set[int] = set()
            if layer == 0:
                # glibc references nothing; the others reference glibc and a
                # few base paths below them.
                if j > 0:
                    refs.add(0)
                    for _ in range(min(j - 1, rng.randint(1, 3))):
                        refs.add(rng.randrange(0, j))
            else:
                pos = (j + 0.5) / size
                refs.add(0)  # glibc
                for _ in range(rng.randint(0, 2)):
                    refs.add(rng.randrange(1, sizes[0]))
                for _ in range(REFS_BELOW[layer]):
                    refs.add(pick(layer - 1, pos, WINDOW[layer]))
                for _ in range(REFS_TWO_BELOW[layer]):
                    refs.add(pick(layer - 2, pos, WINDOW[layer - 1] + WINDOW[layer]))
                if layer >= 2 and rng.random() < 0.35:
                    refs.add(pick_popular())
                # Within the layer: a rare reference to a neighbour below
                # (subcritical, so closures stay bounded).
                if j > 0 and rng.random() < 0.12:
                    refs.add(starts[layer] + rng.randrange(max(0, j - 50), j))
            refs.discard(n)
            if rng.random() < 0.25:
                refs.add(n)  # many real paths reference themselves (RPATH)
            g.refs.append(sorted(refs))
    # Symlink store paths (`…-foo-link` → another path): 0.5 % of the
    # application layer becomes a link to one path it references below.
    for j in range(0, sizes[4], 200):
        n = starts[4] + j
        below = [r for r in g.refs[n] if g.layer_of[r] == 3]
        if below:
            target = below[0]
            g.refs[n] = sorted({target, 0} - {n})
            g.symlink_to[n] = target
    g.starts = starts  # type: ignore[attr-defined]
    g.sizes = sizes  # type: ignore[attr-defined]
    return g


def write_registration(g: Graph, out, seed: int) -> None:
    rng = random.Random(seed + 1)
    for n, path in enumerate(g.paths):
        nar_hash = "%064x" % rng.getrandbits(256)
        nar_size = rng.randint(200, 50_000_000)
        deriver = f"{STORE}/{store_hash(rng)}-{g.names[n]}.drv" if rng.random() < 0.9 else ""
        refs = g.refs[n]
        out.write(f"{path}\nsha256:{nar_hash}\n{nar_size}\n{deriver}\n{len(refs)}\n")
        for r in refs:
            out.write(g.paths[r])
            out.write("\n")


# ---------------------------------------------------------------------------
# Units

DESCRIPTIONS = [
    "{n} daemon", "{n} service", "Periodic {n} job", "{n} network server",
    "{n} metrics exporter", "{n} backup agent", "{n} log shipper", "{n} web frontend",
    "{n} message broker", "{n} database", "{n} cache", "{n} scheduler",
]
AFTER = ["network.target", "network-online.target", "local-fs.target", "remote-fs.target",
         "time-sync.target", "nss-lookup.target", "systemd-tmpfiles-setup.service",
         "dbus.service", "syslog.target", "postgresql.service"]
TYPES = ["simple", "simple", "exec", "notify", "forking", "oneshot", "dbus"]
USR_PROGRAMS = ["/usr/bin/{n}", "/usr/sbin/{n}", "/usr/lib/{n}/{n}-daemon", "/usr/libexec/{n}"]


class UnitWriter:
    """Writes files under the root; between begin() and commit() the writes
    are only collected, so that a rejected attempt leaves nothing behind."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.counts = {"unit": 0, "dropin": 0}
        self.pending: list | None = None

    def begin(self) -> None:
        self.pending = []

    def rollback(self) -> None:
        self.pending = None

    def commit(self) -> None:
        pending, self.pending = self.pending, None
        for op in pending or []:
            op()

    def _do(self, op) -> None:
        if self.pending is None:
            op()
        else:
            self.pending.append(op)

    def write(self, logical: str, text: str, kind: str | None = None) -> None:
        def op() -> None:
            real = self.root + logical
            os.makedirs(os.path.dirname(real), exist_ok=True)
            if kind and not os.path.exists(real):
                self.counts[kind] += 1
            with open(real, "w") as f:
                f.write(text)
        self._do(op)

    def link(self, logical: str, target: str) -> None:
        def op() -> None:
            real = self.root + logical
            os.makedirs(os.path.dirname(real), exist_ok=True)
            os.symlink(target, real)
        self._do(op)


def systemd_escape_dash(s: str) -> str:
    """Writes every '-' as `\\x2d`, which systemd unescapes while splitting."""
    return s.replace("-", "\\x2d")


def build_units(g: Graph, root: str, n_units: int, n_annotated: int, seed: int,
                closure_range: tuple[int, int] = (300, 800)):
    rng = random.Random(seed + 2)
    w = UnitWriter(root)
    starts, sizes = g.starts, g.sizes  # type: ignore[attr-defined]
    apps = range(starts[4], starts[5])
    confs = range(starts[5], starts[6])
    libs3 = range(starts[3], starts[4])

    def near(rng_range: range, pos: float, window: float) -> int:
        size = len(rng_range)
        p = (pos + rng.uniform(-window, window)) % 1.0
        n = rng_range[min(size - 1, int(p * size))]
        return n

    def sp(n: int) -> str:
        return g.paths[n]

    n_services = max(int(n_units * 0.85), n_annotated)
    n_other = max(0, n_units - n_services)
    used_names: set[str] = set()

    def unit_name(suffix: str) -> str:
        while True:
            base = word(rng, rng.randint(1, 3))
            if rng.random() < 0.3:
                base += "-" + rng.choice(["daemon", "agent", "server", "worker", "exporter", "sync"])
            if base not in used_names:
                used_names.add(base)
                return base + suffix

    annotated_idx = set(rng.sample(range(n_services), n_annotated))
    n_full = n_annotated // 5
    full_idx = set(rng.sample(sorted(annotated_idx), n_full))
    manifest_units = []
    wants: list[tuple[str, str, str]] = []  # (wants dir, unit name, unit dir)
    unit_dir: dict[str, str] = {}
    etc = "/etc/systemd/system"
    usr = "/usr/lib/systemd/system"

    # Fedora-style top-level drop-in applying to every service.
    w.write(f"{usr}/service.d/10-timeout-abort.conf",
            "# Make stop timeouts dump core (shipped by the distribution).\n"
            "[Service]\nTimeoutStopFailureMode=abort\n", "dropin")

    for i in range(n_services):
        name = unit_name(".service")
        annotated = i in annotated_idx
        full = i in full_idx
        for attempt in range(1000):
            w.begin()
            # Where the unit file lives: distribution units in /usr/lib, the
            # administrator's own in /etc.
            directory = usr if rng.random() < 0.6 else etc
            pos = rng.random()
            short = name[: -len(".service")]
            desc = rng.choice(DESCRIPTIONS).format(n=short)
            store_exec = annotated or rng.random() < 0.7
            lines_unit = [f"Description={desc.capitalize()}"]
            if rng.random() < 0.5:
                lines_unit.append(f"Documentation=man:{short}(8) https://example.org/{short}/docs")
            after = rng.sample(AFTER, rng.randint(1, 3))
            lines_unit.append("After=" + " ".join(after))
            if "network-online.target" in after:
                lines_unit.append("Wants=network-online.target")
            svc: list[str] = [f"Type={rng.choice(TYPES)}"]
            env_roots: list[int] = []
            start_roots: list[int] = []  # named by ExecStart=
            other_roots: list[int] = []  # named by the other Exec*= keys
            programs: list[tuple[int, str]] = []  # (store path, program in it) the Exec*= keys run
            if store_exec:
                app = near(apps, pos, 0.0)
                start_roots.append(app)
                conf = near(confs, pos, 0.002)
                prog = f"{sp(app)}/bin/{short}"
                programs.append((app, f"bin/{short}"))
                args = []
                if rng.random() < 0.7:
                    start_roots.append(conf)
                    conf_arg = sp(conf)
                    if annotated and rng.random() < 0.05:
                        conf_arg = systemd_escape_dash(conf_arg)
                    args.append(f"--config {conf_arg}")
                args.append(rng.choice(["", "--foreground", "-f", "--no-daemon", "--log-level=info"]))
                exec_start = f"{rng.choice(['', '', '', '-', '@'])}{prog}"
                if exec_start.startswith("@"):
                    exec_start += f" {short}"
                exec_start = " ".join([exec_start] + [a for a in args if a])
                if rng.random() < 0.15:
                    # A line continuation, as hand-written units have.
                    exec_start = exec_start.replace(" --", " \\\n  --", 1)
                if rng.random() < 0.3:
                    pre = near(confs, pos, 0.002)
                    other_roots.append(pre)
                    programs.append((pre, "bin/prepare"))
                    svc.append(f"ExecStartPre={sp(pre)}/bin/prepare")
                svc.append(f"ExecStart={exec_start}")
                if rng.random() < 0.3:
                    kill = near(libs3, pos, 0.01)
                    other_roots.append(kill)
                    programs.append((kill, "bin/kill"))
                    svc.append(f"ExecReload={sp(kill)}/bin/kill -HUP $MAINPID")
                # A store path only in Environment= (not a root unless FullUnit).
                if rng.random() < 0.4 or full:
                    e1 = near(libs3, pos, 0.01)
                    env_roots.append(e1)
                    svc.append(f"Environment=PATH={sp(e1)}/bin:{sp(5)}/bin")  # coreutils
                    env_roots.append(5)
                    if full:
                        e2 = near(apps, pos, 0.004)
                        env_roots.append(e2)
                        svc.append(f'Environment="PYTHONPATH={sp(e2)}/lib/python3.11/site-packages" LANG=C.UTF-8')
                        e3 = near(confs, pos, 0.002)
                        env_roots.append(e3)
                        svc.append(f"EnvironmentFile=-{sp(e3)}")
            else:
                prog = rng.choice(USR_PROGRAMS).format(n=short)
                svc.append(f"ExecStart={prog} {rng.choice(['', '--foreground', '-n'])}".rstrip())
                if rng.random() < 0.3:
                    svc.append("ExecReload=/bin/kill -HUP $MAINPID")
            svc.append(f"Restart={rng.choice(['no', 'on-failure', 'always', 'on-abnormal'])}")
            if rng.random() < 0.5:
                svc.append(f"User={short[:16]}")
            if rng.random() < 0.3:
                svc.append("PrivateTmp=" + rng.choice(["yes", "no"]))
            if rng.random() < 0.3:
                svc.append("ProtectSystem=strict")
            if rng.random() < 0.2:
                svc.append(f"StateDirectory={short}")
            packages: list[int] = []
            annotation_in_dropin = False
            if annotated:
                ann = ["X-ConfinementEnable=yes"]
                if rng.random() < 0.3:
                    p = near(libs3, pos, 0.01)
                    packages.append(p)
                    ann.append(f"X-ConfinementPackages={sp(p)}")
                if rng.random() < 0.1:
                    ann.append("X-ConfinementMode=chroot-only")
                if full:
                    ann.append("X-ConfinementFullUnit=yes")
                # Distribution units are annotated with a drop-in in /etc, as
                # `systemctl edit` would do; the administrator's own in the file.
                annotation_in_dropin = directory == usr and rng.random() < 0.7
                if not annotation_in_dropin:
                    svc.extend(ann)
            text = "[Unit]\n" + "\n".join(lines_unit) + "\n\n[Service]\n" + "\n".join(svc) + "\n"
            enabled = rng.random() < 0.6
            if enabled or rng.random() < 0.5:
                text += "\n[Install]\nWantedBy=multi-user.target\n"
            if rng.random() < 0.2:
                text = f"# {name}: shipped by the {short} package\n" + text
            w.write(f"{directory}/{name}", text, "unit")
            unit_dir[name] = directory
            # Drop-ins.
            if annotation_in_dropin:
                w.write(f"{etc}/{name}.d/confinement.conf", "[Service]\n" + "\n".join(ann) + "\n", "dropin")
            if rng.random() < 0.2:
                dir_ = rng.choice([etc, usr, "/run/systemd/system"]) if directory == usr else etc
                body = rng.choice([
                    "[Service]\nLimitNOFILE=65536\n",
                    "[Service]\nNice=10\nIOSchedulingClass=idle\n",
                    "[Unit]\nStartLimitIntervalSec=0\n",
                    "[Service]\nRestartSec=5s\nTimeoutStartSec=2min\n",
                    "[Service]\nEnvironment=RUST_LOG=info\n",
                ])
                w.write(f"{dir_}/{name}.d/{rng.choice(['override', '10-limits', '50-local'])}.conf", body, "dropin")
            # An administrator's override that replaces ExecStart (the empty
            # assignment resets the list): the old ExecStart roots are gone.
            if store_exec and rng.random() < 0.08:
                new_app = near(apps, pos, 0.0005)
                start_roots = [new_app]
                programs.append((new_app, f"bin/{short}"))
                w.write(f"{etc}/{name}.d/override.conf",
                        f"[Service]\nExecStart=\nExecStart={sp(new_app)}/bin/{short} --verbose\n", "dropin")
            entry = None
            if annotated:
                all_roots = start_roots + other_roots + packages + (env_roots if full else [])
                size = len(g.closure(all_roots))
                if not closure_range[0] <= size <= closure_range[1]:
                    w.rollback()
                    continue
                entry = {
                    "name": name,
                    "full_unit": full,
                    "roots": sorted({sp(r) for r in all_roots}),
                    "model_closure_size": size,
                    "attempts": attempt + 1,
                    "_root_ids": sorted(set(all_roots)),
                    "_programs": programs,
                }
            w.commit()
            break
        else:
            raise SystemExit(f"no closure of {closure_range} found for {name}: tune the graph")
        unit_dir[name] = directory
        if enabled:
            wants.append(("multi-user.target.wants", name, directory))
        if entry:
            manifest_units.append(entry)

    # Other units: sockets, timers, targets, paths.
    for i in range(n_other):
        kind = rng.choice([".socket", ".timer", ".timer", ".target", ".path", ".mount"])
        if kind == ".mount":
            name = f"srv-{word(rng, 2)}.mount"
            while name in used_names:
                name = f"srv-{word(rng, 2)}.mount"
            used_names.add(name)
            body = f"[Unit]\nDescription=Data volume {name}\n\n[Mount]\nWhat=/dev/disk/by-label/{name[4:-6]}\nWhere=/{name[:-6].replace('-', '/')}\nType=ext4\n"
        else:
            name = unit_name(kind)
            short = name.rsplit(".", 1)[0]
            if kind == ".socket":
                body = f"[Unit]\nDescription={short} socket\n\n[Socket]\nListenStream=/run/{short}.sock\n\n[Install]\nWantedBy=sockets.target\n"
            elif kind == ".timer":
                body = f"[Unit]\nDescription=Run {short} daily\n\n[Timer]\nOnCalendar=daily\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
            elif kind == ".target":
                body = f"[Unit]\nDescription={short} services\nRequires=multi-user.target\n"
            else:
                body = f"[Unit]\nDescription=Watch {short}\n\n[Path]\nPathChanged=/etc/{short}.conf\n"
        directory = usr if rng.random() < 0.6 else etc
        w.write(f"{directory}/{name}", body, "unit")
    # Enablement links, aliases and masks, as on a real system.
    for wants_dir, name, directory in wants:
        w.link(f"{etc}/{wants_dir}/{name}", f"{directory}/{name}")
    annotated_names = {u["name"] for u in manifest_units}
    plain = [n for n in sorted(unit_dir) if n not in annotated_names]
    for name in rng.sample(plain, min(10, len(plain))):
        w.link(f"{etc}/dbus-org.example.{name}", f"{unit_dir[name]}/{name}")
    for name in rng.sample(plain, min(5, len(plain))):
        if unit_dir[name] == usr and not os.path.lexists(f"{root}{etc}/{name}"):
            w.link(f"{etc}/{name}", "/dev/null")
    return manifest_units, w.counts["unit"], w.counts["dropin"]


# ---------------------------------------------------------------------------


def script_hash() -> str:
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def graph_source_hash() -> str:
    """What the Nix database depends on: the graph model, not the units."""
    import inspect
    parts = [inspect.getsource(f) for f in (build_graph, layer_sizes, write_registration,
                                             store_hash, word, version, Graph)]
    parts.append(repr((BASE_NAMES, SYLLABLES, LIB_PREFIX, OUT_SUFFIX, APP_KIND, CONF_KIND,
                       WINDOW, REFS_BELOW, REFS_TWO_BELOW, STORE)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def key_of(obj, graph_only: bool = False) -> str:
    source = graph_source_hash() if graph_only else script_hash()
    text = json.dumps(dict(obj, v=FORMAT_VERSION, source=source), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_graph_db(g: Graph, cache: str, paths: int, seed: int) -> tuple[str, dict]:
    """The Nix database of the graph, loaded by `nix-store --load-db` once per
    graph and copied (as a file) into every system built over that graph."""
    key = key_of({"paths": paths, "seed": seed}, graph_only=True)
    final = os.path.join(cache, f"graph-p{paths}-s{seed}-{key}")
    info_file = os.path.join(final, "graph.json")
    if os.path.exists(info_file):
        with open(info_file) as f:
            info = json.load(f)
        log(f"reusing the Nix database in {final} (loaded in {info['load_db_seconds']:.1f} s when built)")
        return final, dict(info, reused=True)
    tmp = final + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    t0 = time.monotonic()
    reg = os.path.join(tmp, "reg.txt")
    with open(reg, "w") as f:
        write_registration(g, f, seed)
    t1 = time.monotonic()
    log(f"registration file written in {t1 - t0:.1f} s ({os.path.getsize(reg) >> 20} MiB)")
    store_root = os.path.join(tmp, "root")
    with open(reg) as f:
        r = subprocess.run(["nix-store", "--store", f"local?root={store_root}", "--load-db"],
                           stdin=f, capture_output=True, text=True)
    t2 = time.monotonic()
    if r.returncode != 0:
        raise SystemExit(f"nix-store --load-db failed ({r.returncode}):\n{r.stderr}")
    log(f"nix-store --load-db of {len(g.paths)} paths: {t2 - t1:.1f} s")
    os.remove(reg)
    db = os.path.join(store_root, "nix/var/nix/db")
    for leftover in ("db.sqlite-wal", "db.sqlite-shm"):
        if os.path.exists(os.path.join(db, leftover)):
            raise SystemExit(f"nix-store --load-db left {leftover} behind")
    # Sanity: Nix sees the graph we meant (one path's references).
    probe = max(range(len(g.paths)), key=lambda n: len(g.refs[n]))
    q = subprocess.run(["nix-store", "--store", f"local?root={store_root}", "--query",
                        "--references", g.paths[probe]], capture_output=True, text=True, check=True)
    if sorted(q.stdout.split()) != sorted(g.paths[r] for r in g.refs[probe]):
        raise SystemExit(f"nix-store --query --references {g.paths[probe]} disagrees with the model")
    os.makedirs(os.path.join(tmp, "db"))
    for name in ("db.sqlite", "schema"):
        shutil.copyfile(os.path.join(db, name), os.path.join(tmp, "db", name))
    shutil.rmtree(store_root)
    info = {"paths": len(g.paths), "references": sum(len(r) for r in g.refs),
            "layers": g.sizes, "registration_seconds": t1 - t0,  # type: ignore[attr-defined]
            "load_db_seconds": t2 - t1}
    with open(os.path.join(tmp, "graph.json"), "w") as f:
        json.dump(info, f, indent=1)
    os.rename(tmp, final)
    return final, dict(info, reused=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--annotated", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    if args.annotated > args.units:
        args.units = args.annotated
    os.makedirs(args.cache, exist_ok=True)
    # One builder at a time per cache directory.
    lock = open(os.path.join(args.cache, ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    key = key_of({"paths": args.paths, "units": args.units, "annotated": args.annotated,
                  "seed": args.seed})
    final = os.path.join(args.cache, f"a{args.annotated}-u{args.units}-p{args.paths}-s{args.seed}-{key}")
    if os.path.exists(os.path.join(final, "manifest.json")) and not args.rebuild:
        log(f"reusing {final}")
        print(final)
        return 0
    if os.path.exists(final):
        shutil.rmtree(final)
    tmp = final + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    t0 = time.monotonic()
    log(f"graph: {args.paths} paths (seed {args.seed})")
    g = build_graph(args.paths, args.seed)
    n_refs = sum(len(r) for r in g.refs)
    t_graph = time.monotonic()
    log(f"graph built in {t_graph - t0:.1f} s: {len(g.paths)} paths, {n_refs} references "
        f"({n_refs / len(g.paths):.1f} per path), layers {g.sizes}")  # type: ignore[attr-defined]
    graph_dir, graph_info = load_graph_db(g, args.cache, args.paths, args.seed)
    db_dir = os.path.join(root, "nix/var/nix/db")
    os.makedirs(db_dir)
    for name in ("db.sqlite", "schema"):
        shutil.copyfile(os.path.join(graph_dir, "db", name), os.path.join(db_dir, name))
    t_load = time.monotonic()

    units, n_files, n_dropins = build_units(g, root, args.units, args.annotated, args.seed)
    t_units = time.monotonic()
    log(f"{n_files} unit files, {n_dropins} drop-ins, {len(units)} annotated "
        f"({sum(u['full_unit'] for u in units)} FullUnit) in {t_units - t_load:.1f} s")

    # The closures' store paths, created on disk.
    on_disk: set[int] = set()
    for u in units:
        on_disk |= g.closure(u.pop("_root_ids"))
    for n in sorted(on_disk):
        real = root + g.paths[n]
        if n in g.symlink_to:
            os.symlink(g.paths[g.symlink_to[n]], real)
        else:
            os.makedirs(real, exist_ok=True)
    # The programs the annotated units' Exec*= lines run, as executable
    # files (in the store path a symlink store path leads to), so that the
    # generator finds each of them as on a real system.
    for u in units:
        for n, program in u.pop("_programs"):
            real = f"{root}{g.paths[g.symlink_to.get(n, n)]}/{program}"
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(real, 0o755)
    t_disk = time.monotonic()
    sizes = sorted(u["model_closure_size"] for u in units)
    log(f"closure sizes (model): min {sizes[0]} median {sizes[len(sizes) // 2]} max {sizes[-1]}; "
        f"{len(on_disk)} store paths created on disk "
        f"({sum(1 for n in on_disk if n in g.symlink_to)} symlinks) in {t_disk - t_units:.1f} s")
    manifest = {
        "params": {"paths": args.paths, "units": args.units, "annotated": args.annotated,
                   "seed": args.seed},
        "unit_files": n_files,
        "dropins": n_dropins,
        "references": n_refs,
        "layers": g.sizes,  # type: ignore[attr-defined]
        "store_paths_on_disk": len(on_disk),
        "closure_sizes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]},
        "build_seconds": {
            "graph": t_graph - t0,
            "load_db": graph_info["load_db_seconds"],
            "load_db_reused": graph_info["reused"],
            "registration": graph_info["registration_seconds"],
            "units": t_units - t_load,
            "store_dirs": t_disk - t_units,
            "total": t_disk - t0,
        },
        "units": units,
    }
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    os.rename(tmp, final)
    log(f"built {final} in {t_disk - t0:.1f} s")
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
