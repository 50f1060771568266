#!/usr/bin/env python3
"""Generation-speed benchmark (issues 6 and 15).

For each synthetic system (built or reused by build_system.py):
  1. the whole generator process, `GEN --root ROOT OUT`, with a fresh empty
     OUT each run (created and removed outside the timed region): warm-up
     runs, then counted runs; wall time from spawn to exit (posix_spawn +
     wait4, no shell); peak RSS from separate runs under `/usr/bin/time -f %M`
     (getrusage of a child started from Python would also count Python's own
     RSS, which the kernel carries over exec). Twice: with the closure cache
     of the previous run in ROOT/run/nix-confinement-generator/closures
     ("cache warm": every daemon-reload while the units' store paths stay
     registered) and with it removed before each run ("no cache": the first
     run after boot, or ClosureCache= empty);
  2. the baseline a shell implementation would have: one
     `nix-store --store local?root=ROOT --query --requisites ROOTS…` per
     annotated unit, the same roots the units name, total wall time for all
     units;
  3. correctness: for every annotated unit (so more than the ≥ 5 sampled the
     the targets ask, FullUnit ones included) the store paths bound by the
     generated drop-in are exactly the `nix-store -qR` output; no other unit
     gets a drop-in; nothing is blocked.
Prints a report; exits 1 if a generator run failed, 2 if the output is wrong
(and, with --strict, 3 if a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_MEDIAN_MS = 20.0
TARGET_RSS_MIB = 16.0
TARGET_RATIO = 50.0
STORE = "/nix/store"
CLOSURE_CACHE = "/run/nix-confinement-generator/closures"
VIEWS = "/run/nix-confinement-views"
VIEW_RECORDS = "/run/nix-confinement-generator/views"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class GeneratorFailed(Exception):
    pass


# ---------------------------------------------------------------------------
# Running the generator


def spawn_timed(argv: list[str], stdout: str, stderr: str) -> tuple[int, int, float]:
    """Runs argv without a shell; returns (wall ns, exit status, CPU ms)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")}
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    return t1 - t0, os.waitstatus_to_exitcode(status), (usage.ru_utime + usage.ru_stime) * 1e3


def read(path: str, limit: int = 20000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""


class Runner:
    made = 0

    def __init__(self, generator: str, root: str, work: str, out_base: str,
                 before=None, after=None) -> None:
        self.before = before  # called before each run, outside the timed region
        self.after = after  # and after it
        self.generator = generator
        self.root = root
        self.work = work
        self.out_base = out_base
        self.cpu: list[float] = []
        self.stdout = os.path.join(work, "stdout")
        self.stderr = os.path.join(work, "stderr")

    def fresh_out(self) -> str:
        Runner.made += 1  # unique across runners: kept outputs stay
        out = os.path.join(self.out_base, f"out-{Runner.made}")
        os.mkdir(out)
        return out

    def argv(self, out: str) -> list[str]:
        return [self.generator, "--root", self.root, out]

    def run_once(self, keep: bool = False) -> tuple[float, str | None]:
        if self.before:
            self.before()
        try:
            out = self.fresh_out()
            ns, status, cpu = spawn_timed(self.argv(out), self.stdout, self.stderr)
            self.cpu.append(cpu)
            if status != 0:
                raise GeneratorFailed(
                    f"generator exited with {status}: {' '.join(self.argv(out))}\n"
                    f"--- stderr ---\n{read(self.stderr)}--- end of stderr ---")
            if keep:
                return ns / 1e6, out
            shutil.rmtree(out)
            return ns / 1e6, None
        finally:
            if self.after:
                self.after()

    def rss_once(self) -> float:
        """Peak RSS (MiB) of one run, measured by GNU time."""
        if self.before:
            self.before()
        try:
            out = self.fresh_out()
            rss_file = os.path.join(self.work, "rss")
            argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + self.argv(out)
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            shutil.rmtree(out)
        finally:
            if self.after:
                self.after()
        if r.returncode != 0:
            raise GeneratorFailed(f"generator exited with {r.returncode} under /usr/bin/time\n"
                                  f"--- stderr ---\n{r.stderr}--- end of stderr ---")
        return int(read(rss_file).split()[-1]) / 1024.0


def hyperfine_median(runner: Runner, warmup: int, runs: int) -> float | None:
    if not shutil.which("hyperfine"):
        return None
    out = os.path.join(runner.out_base, "out-hyperfine")
    export = os.path.join(runner.work, "hyperfine.json")
    argv = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs), "--style", "none",
            "--prepare", f"sh -c 'rm -rf {out} && mkdir {out}'",
            "--export-json", export, " ".join(runner.argv(out))]
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if r.returncode != 0:
        log(f"hyperfine failed (ignored): {r.stderr.strip()[:500]}")
        return None
    with open(export) as f:
        data = json.load(f)
    return data["results"][0]["median"] * 1000.0


# ---------------------------------------------------------------------------
# Reading drop-ins


def split_words(value: str) -> list[str]:
    """systemd's extract_first_word() with quotes and backslash escapes kept
    minimal: enough for the values the generator writes (`\\:` and `\\ `
    escapes, optional quotes)."""
    words, cur, quote, i, have = [], [], None, 0, False
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append("\\" + value[i + 1])  # keep escapes for the colon split
            i += 2
            have = True
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                cur.append(c)
        elif c in "\"'":
            quote, have = c, True
        elif c.isspace():
            if have:
                words.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        words.append("".join(cur))
    return words


def split_colons(word: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(word):
        if word[i] == "\\" and i + 1 < len(word):
            cur.append(word[i + 1])
            i += 2
            continue
        if word[i] == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(word[i])
        i += 1
    parts.append("".join(cur))
    return [p.replace("%%", "%") for p in parts]


def view_paths(root: str, digest: str) -> list[str]:
    """The store paths of the closure view `digest`, as the generator
    recorded them for the view's unit to mount."""
    with open(os.path.join(root, VIEW_RECORDS.lstrip("/"), digest)) as f:
        lines = f.read().splitlines()
    assert lines[0] == "nix-confinement-generator closure view 1", lines[0]
    return [f"{lines[1]}/{name}" for name in lines[2:]]


def read_binds(unit_dir: str, root: str) -> tuple[dict[str, str], set[str], list[str]]:
    """The binds of every drop-in in unit_dir: {destination: source}, the
    directives seen, and lines of concern (blocking assertions). A closure
    view counts as binding each path of its closure at itself."""
    binds: dict[str, str] = {}
    keys: set[str] = set()
    concerns: list[str] = []
    for name in sorted(os.listdir(unit_dir)):
        if not name.endswith(".conf"):
            continue
        with open(os.path.join(unit_dir, name)) as f:
            text = f.read()
        text = re.sub(r"\\\n", " ", text)
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            # A blocked unit has an assertion that can never hold; the
            # store view's read-only check (AssertPathIsReadWrite=!…) is
            # part of every confined unit, and a closure view's checks (it
            # is mounted, nothing is mounted over its s/) of every unit
            # with a view: none is a block.
            blocking = key.startswith("Assert") and not (
                (key == "AssertPathIsReadWrite" and value.startswith("!"))
                or (key == "AssertPathIsMountPoint" and value.lstrip("!").startswith(VIEWS + "/"))
            )
            if blocking or "BLOCKED" in line:
                concerns.append(f"{name}: {line}")
            if key not in ("BindReadOnlyPaths", "BindPaths"):
                if key in ("TemporaryFileSystem",):
                    keys.add(f"{key}={value}")
                continue
            keys.add(key)
            if value == "":
                binds.clear()  # an empty assignment resets the list
                continue
            view = re.fullmatch(re.escape(VIEWS) + r"/([0-9a-f]{32})/s:" + re.escape(STORE)
                                + r"(:norbind)?", value)
            if view:
                keys.add("closure view")
                for path in view_paths(root, view.group(1)):
                    binds[path] = path
                continue
            for word in split_words(value):
                if word.startswith("-"):
                    word = word[1:]
                parts = split_colons(word)
                source = parts[0]
                dest = parts[1] if len(parts) > 1 and parts[1] else source
                binds[dest] = source
    return binds, keys, concerns


UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system")


def where_named(root: str, unit: str, path: str) -> str:
    """`Key= at file:line` for the line of the unit's files naming `path`."""
    name = os.path.basename(path)
    unescaped = name.replace("-", "\\x2d")
    for d in UNIT_DIRS:
        files = [f"{d}/{unit}"]
        dropins = root + f"{d}/{unit}.d"
        if os.path.isdir(dropins):
            files += [f"{d}/{unit}.d/{f}" for f in sorted(os.listdir(dropins))]
        for logical in files:
            try:
                with open(root + logical) as f:
                    for number, line in enumerate(f, 1):
                        if name in line or unescaped in line:
                            return f"{line.split('=', 1)[0].strip()}= at {logical}:{number}"
            except OSError:
                continue
    return "?"


def check_output(out: str, root: str, units: list[dict], closures: dict[str, list[str]],
                 ) -> tuple[list[str], dict]:
    """Compares every annotated unit's bound store paths with nix-store -qR."""
    errors: list[str] = []
    annotated = {u["name"] for u in units}
    produced = {d[:-2] for d in os.listdir(out) if d.endswith(".d")}
    for extra in sorted(produced - annotated):
        errors.append(f"{extra}: a drop-in was written for a unit that is not annotated")
    styles: set[str] = set()
    checked = full_checked = 0
    dropin_bytes = [sum(os.path.getsize(os.path.join(out, d + ".d", f))
                        for f in os.listdir(os.path.join(out, d + ".d")))
                    for d in sorted(produced & annotated)]
    for u in units:
        name = u["name"]
        expected = set(closures[name])
        if name not in produced:
            errors.append(f"{name}: no drop-in was written")
            continue
        binds, keys, concerns = read_binds(os.path.join(out, name + ".d"), root)
        styles |= keys
        if concerns:
            errors.append(f"{name}: blocked or asserting: {concerns[0]}")
        bound = {d for d in binds if d.startswith(STORE + "/")}
        if bound != expected:
            missing = sorted(expected - bound)
            extra = sorted(bound - expected)
            lost_roots = [f"{r} ({where_named(root, name, r)})" for r in u["roots"] if r not in bound]
            errors.append(
                f"{name}{' (FullUnit)' if u['full_unit'] else ''}: binds {len(bound)} store paths, "
                f"nix-store -qR has {len(expected)}: {len(missing)} missing "
                f"(e.g. {missing[:1]}), {len(extra)} extra (e.g. {extra[:1]})"
                + (f"; roots not bound: {lost_roots}" if lost_roots else ""))
            continue
        # Each bind's source must be that path (or the resolved target of a
        # symlink store path), wherever the generator takes it from.
        for dest in bound:
            real = root + dest
            # A view shows a symlink store path as the symlink it is.
            viewed = binds[dest] == dest and "closure view" in keys
            want = os.path.basename(os.path.realpath(real)) if os.path.islink(real) and not viewed \
                else os.path.basename(dest)
            if os.path.basename(binds[dest].rstrip("/")) != want:
                errors.append(f"{name}: {dest} is bound from {binds[dest]}, expected …/{want}")
                break
        checked += 1
        full_checked += u["full_unit"]
    return errors, {"checked": checked, "full_checked": full_checked,
                    "styles": sorted(styles), "dropin_bytes": dropin_bytes}


# ---------------------------------------------------------------------------
# Baseline


def baseline(root: str, units: list[dict], passes: int) -> tuple[list[float], dict[str, list[str]]]:
    """One `nix-store --query --requisites` per annotated unit; total ms per pass."""
    store = f"local?root={root}"
    closures: dict[str, list[str]] = {}
    # Warm-up: the binary, its libraries and the database in the page cache.
    subprocess.run(["nix-store", "--store", store, "--query", "--requisites"] + units[0]["roots"],
                   stdout=subprocess.DEVNULL, check=True)
    totals = []
    for _ in range(passes):
        t0 = time.perf_counter_ns()
        for u in units:
            r = subprocess.run(["nix-store", "--store", store, "--query", "--requisites"]
                               + u["roots"], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise SystemExit(f"nix-store -qR failed for {u['name']}: {r.stderr}")
            closures[u["name"]] = r.stdout.split()
        totals.append((time.perf_counter_ns() - t0) / 1e6)
    return totals, closures


# ---------------------------------------------------------------------------
# Profiling


GENERIC_FRAMES = re.compile(
    r"^(_start|main|__libc_start|std::sys::backtrace|std::rt::|core::ops::function|"
    r"entry_SYSCALL|do_syscall_64|nix_confinement_generator::main$)")


def profile(runner: Runner, runs: int, top: int) -> str:
    """perf (DWARF call graphs) over `runs` generator runs: the hottest
    functions by self time and by total time (with callees)."""
    if not shutil.which("perf"):
        return "perf is not installed\n"
    script = os.path.join(runner.work, "loop.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nset -e\n")
        for i in range(runs):
            out = os.path.join(runner.out_base, f"perf-out-{i}")
            f.write(f"mkdir {out}\n{' '.join(runner.argv(out))} 2>/dev/null\nrm -rf {out}\n")
    data = os.path.join(runner.work, "perf.data")
    r = subprocess.run(["perf", "record", "-q", "-F", "2000", "--call-graph", "dwarf,16384",
                        "-o", data, "sh", script],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return f"perf record failed: {r.stderr[-2000:]}\n"
    comm = os.path.basename(runner.generator)[:15]
    report = []
    for title, extra in (("self time", ["--no-children"]), ("total time (with callees)", ["--children"])):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--comm", comm,
                            "--sort", "symbol", "-g", "none", "--percent-limit", "0.3"] + extra,
                           capture_output=True, text=True)
        rows: dict[str, str] = {}
        for line in r.stdout.splitlines():
            m = re.match(r"\s*([\d.]+%)\s+(?:([\d.]+%)\s+)?\[(.)\]\s+(.*?)\s*(?:-\s+-\s*)?$", line)
            if not m:
                continue
            total, self_, kind, sym = m.groups()
            if GENERIC_FRAMES.match(sym) or sym in rows:
                continue
            rows[sym] = f"{total:>7} {'' if self_ is None else f'(self {self_:>6}) '}" \
                        f"{'kernel ' if kind == 'k' else ''}{sym[:120]}"
        report.append(f"  perf, {title}, top {top} ({runs} runs of the profiling build):")
        report.extend("    " + row for row in list(rows.values())[:top])
    return "\n".join(report) + "\n"


def callgrind(runner: Runner, top: int) -> str:
    """One run under callgrind: instructions (user space only, no I/O wait)
    by function, inclusive, generic frames left out."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        return "valgrind is not installed\n"
    data = os.path.join(runner.work, "callgrind.out")
    out = runner.fresh_out()
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}"]
                       + runner.argv(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    shutil.rmtree(out, ignore_errors=True)
    if r.returncode != 0:
        return f"callgrind failed: {r.stderr[-2000:]}\n"
    r = subprocess.run(["callgrind_annotate", "--inclusive=yes", data],
                       capture_output=True, text=True)
    rows: dict[str, str] = {}
    total = None
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", line)
        if not m:
            continue
        ir, pct, where = m.groups()
        if where.startswith("PROGRAM TOTALS"):
            total = ir
            continue
        fn = re.sub(r"\s*\[[^\]]*\]$", "", where)
        fn = fn.split(":", 1)[1] if ":" in fn else fn
        if fn.startswith(("???", "0x", "(below main)")) or GENERIC_FRAMES.match(fn) \
                or fn in ("nix_confinement_generator::cli::main", "__libc_start_main@@GLIBC_2.34"):
            continue
        rows.setdefault(fn, f"{pct:>6}% {fn[:120]}")
    lines = [f"  callgrind, instructions incl. callees, top {top} (one run, {total} instructions):"]
    lines.extend("    " + row for row in list(rows.values())[:top])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def floor(root: str, reference_out: str, work: str, out_base: str, runs: int) -> dict | None:
    """The system calls a run cannot avoid, timed alone by floor.c (one
    thread): reading every unit file and drop-in, writing the drop-ins the
    generator wrote. Medians of `runs` runs; None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    binary = os.path.join(work, "floor")
    subprocess.run([cc, "-O2", "-o", binary, os.path.join(HERE, "floor.c")], check=True)
    reads, writes = [], []
    for _ in range(runs):
        out = tempfile.mkdtemp(dir=out_base)
        text = subprocess.run([binary, root, reference_out, out], capture_output=True, text=True,
                              check=True).stdout
        shutil.rmtree(out)
        m = re.search(r"read (\d+) files in (\d+) directories \((\d+) bytes\): ([\d.]+) ms", text)
        w = re.search(r"wrote (\d+) drop-ins \((\d+) bytes\): ([\d.]+) ms", text)
        reads.append(float(m.group(4)))
        writes.append(float(w.group(3)))
    return {"files": int(m.group(1)), "dirs": int(m.group(2)), "read_ms": statistics.median(reads),
            "dropins": int(w.group(1)), "bytes": int(w.group(2)),
            "write_ms": statistics.median(writes)}


def measure(args, system: str, generator: str, passes: int) -> dict:
    with open(os.path.join(system, "manifest.json")) as f:
        manifest = json.load(f)
    root = os.path.join(system, "root")
    units = manifest["units"]
    db = os.path.join(root, "nix/var/nix/db/db.sqlite")
    res = {"manifest": manifest, "system": system}
    # As on a real system, ROOT/run is a tmpfs holding the output
    # directories (/run/systemd/generator), the closure cache and the views'
    # records. Mounting needs root; without it the output goes to
    # --out-base.
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir, exist_ok=True)
    run_mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=755", "ncg-bench-run", run_dir]).returncode == 0
    res["run_tmpfs"] = run_mounted
    if args.against and not run_mounted:
        raise GeneratorFailed("--against mounts a tmpfs over ROOT/run: run as root")
    out_parent = os.path.join(run_dir, "systemd") if run_mounted else args.out_base
    os.makedirs(out_parent, exist_ok=True)
    try:
        return measure_in(args, res, root, units, db, out_parent, passes, generator)
    finally:
        if run_mounted:
            subprocess.run(["umount", run_dir])


def measure_alone(args, res: dict, root: str, work: str, out_base: str, generator: str,
                  drop_cache) -> tuple[dict, Runner]:
    """No cache first (removed before each run), then with the cache the
    previous run left (the warm-up runs make it). Returns the outputs to
    check and the last runner."""
    kept = {}
    for mode, before in (("cold", drop_cache), ("warm", None)):
        runner = Runner(generator, root, work, out_base, before)
        for _ in range(args.warmup):
            runner.run_once()
        runner.cpu.clear()
        times = [runner.run_once()[0] for _ in range(args.runs)]
        prefix = "" if mode == "warm" else "cold_"
        res[prefix + "cpu"] = list(runner.cpu)
        _, kept[mode] = runner.run_once(keep=True)  # the output that is checked
        res[prefix + "rss"] = [runner.rss_once() for _ in range(args.rss_runs)]
        res[prefix + "times"] = times
    return kept, runner


def measure_against(args, res: dict, root: str, work: str, out_base: str, generator: str,
                    drop_cache) -> tuple[dict, Runner]:
    """As measure_alone, with every counted run of the generator paired with
    one of --against (A B, then B A, …), so that the two see the same load
    on a shared machine. The other generator runs in a /run of its own (a
    tmpfs mounted over ROOT/run for its runs only): a closure cache one
    build wrote is not the other's, and an older build links drop-ins from
    its scratch directory into the output directory, which must then be on
    the same mount."""
    run_dir = os.path.join(root, "run")
    other_run = os.path.join(work, "against-run")
    os.makedirs(other_run)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "ncg-bench-against", other_run],
                   check=True)

    def other_hooks(cold: bool):
        def before() -> None:
            subprocess.run(["mount", "--bind", other_run, run_dir], check=True)
            os.makedirs(out_base, exist_ok=True)
            if cold:
                drop_cache()

        def after() -> None:
            subprocess.run(["umount", run_dir], check=True)
        return before, after

    kept, against = {}, {}
    try:
        for mode in ("cold", "warm"):
            cold = mode == "cold"
            this = Runner(generator, root, work, out_base, drop_cache if cold else None)
            other = Runner(args.against, root, work, out_base, *other_hooks(cold))
            for _ in range(args.warmup):
                this.run_once()
                other.run_once()
            this.cpu.clear()
            other.cpu.clear()
            times, other_times = [], []
            for i in range(args.runs):
                for runner in ((this, other) if i % 2 == 0 else (other, this)):
                    (times if runner is this else other_times).append(runner.run_once()[0])
            prefix = "" if mode == "warm" else "cold_"
            res[prefix + "cpu"] = list(this.cpu)
            res[prefix + "times"] = times
            against[prefix + "cpu"] = list(other.cpu)
            against[prefix + "times"] = other_times
            _, kept[mode] = this.run_once(keep=True)  # the output that is checked
            res[prefix + "rss"] = [this.rss_once() for _ in range(args.rss_runs)]
    finally:
        subprocess.run(["umount", other_run])
    against["generator"] = args.against
    res["against"] = against
    return kept, this


def measure_in(args, res: dict, root: str, units: list, db: str, out_parent: str, passes: int,
               generator: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="ncg-bench-") as work, \
            tempfile.TemporaryDirectory(prefix="ncg-bench-out-", dir=out_parent) as out_base:
        cache_file = os.path.join(root, CLOSURE_CACHE.lstrip("/"))
        records_dir = os.path.join(root, VIEW_RECORDS.lstrip("/"))

        def drop_cache() -> None:
            # A boot: nothing in /run.
            if os.path.exists(cache_file):
                os.remove(cache_file)
            shutil.rmtree(records_dir, ignore_errors=True)

        if args.against:
            kept, runner = measure_against(args, res, root, work, out_base, generator,
                                           drop_cache)
        else:
            kept, runner = measure_alone(args, res, root, work, out_base, generator, drop_cache)
        times = res["times"]

        res["hyperfine_median"] = (hyperfine_median(runner, args.warmup, args.runs)
                                   if args.hyperfine else None)
        if os.path.exists(db + "-wal"):
            log("warning: the database has a -wal file; the generator read it through the WAL")
        log(f"{len(units)} annotated: generator median {statistics.median(times):.1f} ms; "
            f"baseline: {passes} pass(es) of {len(units)} × nix-store -qR …")
        totals, closures = baseline(root, units, passes)
        res["baseline"] = totals
        errors, info = check_output(kept["warm"], root, units, closures)
        cold_errors, cold_info = check_output(kept["cold"], root, units, closures)
        errors += [f"(no cache) {e}" for e in cold_errors]
        info["checked_cold"] = cold_info["checked"]
        res["errors"] = errors
        res["floor"] = floor(root, kept["warm"], work, out_base, args.runs)
        res["check"] = info
        sizes = sorted(len(c) for c in closures.values())
        res["closure_sizes"] = (sizes[0], statistics.median(sizes), sizes[-1])
        for name in ("db.sqlite-wal", "db.sqlite-shm"):
            if os.path.exists(os.path.join(root, "nix/var/nix/db", name)):
                log(f"note: nix-store left {name}; removing it so later runs read the main file")
                os.remove(os.path.join(root, "nix/var/nix/db", name))
        if args.perf and len(units) == args.annotated:
            prof_gen = args.profile_generator or generator
            res["profile"] = profile(Runner(prof_gen, root, work, out_base), args.perf,
                                     args.perf_top)
        if args.callgrind and len(units) == args.annotated:
            prof_gen = args.profile_generator or generator
            res["profile"] = res.get("profile", "") + callgrind(
                Runner(prof_gen, root, work, out_base), args.perf_top)
    return res


def print_against(spec: dict, base: float) -> None:
    """This generator and --against, run in turn: medians, ratios to the
    baseline, and the median of the paired differences (this − against)."""
    other = spec["against"]
    print()
    print(f"In turn with --against {other['generator']} (A B, B A, …; each with a /run "
          f"of its own):")
    head = (f"{'closure cache':>13} | {'this ms':>8} | {'against ms':>10} | {'this ratio':>10} | "
            f"{'against ratio':>13} | {'paired difference ms':>20} | CPU ms this / against")
    print(head)
    print("-" * len(head))
    for label, prefix in (("warm", ""), ("none", "cold_")):
        this, that = spec[prefix + "times"], other[prefix + "times"]
        mine, theirs = statistics.median(this), statistics.median(that)
        difference = statistics.median(a - b for a, b in zip(this, that))
        cpu = (f"{fmt_ms(statistics.median(spec[prefix + 'cpu']))} / "
               f"{fmt_ms(statistics.median(other[prefix + 'cpu']))}")
        print(f"{label:>13} | {fmt_ms(mine):>8} | {fmt_ms(theirs):>10} | {base / mine:>9.1f}× | "
              f"{base / theirs:>12.1f}× | {difference:>+20.1f} | {cpu}")
    print()


def default_out_base() -> str:
    """A tmpfs, like /run where systemd puts generator output."""
    mounts = {}
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mounts[parts[1]] = parts[2]
    except OSError:
        pass
    for candidate in ("/run", "/dev/shm"):
        if mounts.get(candidate) == "tmpfs" and os.access(candidate, os.W_OK):
            return candidate
    return tempfile.gettempdir()


def fs_type(path: str) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mp = parts[1]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, kind = mp, parts[2]
    return kind


def fmt_ms(x: float) -> str:
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--annotated", type=int, default=100)
    ap.add_argument("--variants", default="10,1000",
                    help="other annotated counts to report (comma-separated, empty for none)")
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rss-runs", type=int, default=5)
    ap.add_argument("--baseline-passes", type=int, default=0,
                    help="passes over all units (0: 3 up to 100 annotated units, else 1)")
    ap.add_argument("--hyperfine", action="store_true", help="cross-check the median with hyperfine")
    ap.add_argument("--perf", type=int, default=0, metavar="RUNS",
                    help="profile RUNS generator runs with perf on the main system")
    ap.add_argument("--callgrind", action="store_true",
                    help="also one callgrind run on the main system")
    ap.add_argument("--perf-top", type=int, default=15)
    ap.add_argument("--profile-generator", help="binary with symbols for --perf")
    ap.add_argument("--out-base", default=default_out_base(),
                    help="where the output directories go (default: a tmpfs, as "
                         "/run/systemd/generator is)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--against", metavar="BIN",
                    help="another generator binary, run in turn with this one (needs root): "
                         "both medians and ratios, and the median of the paired differences")
    ap.add_argument("--label", help="what is measured (default: git describe of the working tree)")
    args = ap.parse_args()
    counts = [args.annotated] + [int(x) for x in args.variants.split(",") if x.strip()]
    counts = list(dict.fromkeys(counts))

    results = []
    load_before = f"{os.getloadavg()[0]:.2f}"
    for count in counts:
        t0 = time.monotonic()
        cmd = [sys.executable, os.path.join(HERE, "build_system.py"), "--cache", args.cache,
               "--annotated", str(count), "--paths", str(args.paths), "--units", str(args.units)]
        if args.rebuild:
            cmd.append("--rebuild")
        system = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        build_s = time.monotonic() - t0
        passes = args.baseline_passes or (3 if count <= 100 else 1)
        try:
            res = measure(args, system, args.generator, passes)
        except GeneratorFailed as e:
            print(f"\nFAILED on the system with {count} annotated units ({system}):\n{e}")
            return 1
        res["count"] = count
        res["prepare_seconds"] = build_s
        results.append(res)

    # ---- report
    main_res = results[0]
    m = main_res["manifest"]
    git = args.label or (subprocess.run(["git", "-C", HERE, "describe", "--always", "--dirty"],
                                        capture_output=True, text=True).stdout.strip() or "?")
    print()
    print(f"Generation benchmark — nix-confinement-generator at {git}, "
          f"{platform.node()}, {os.cpu_count()} CPUs, {platform.release()}")
    print(f"Store: {m['params']['paths']:,} paths, {m['references']:,} references "
          f"({m['references'] / m['params']['paths']:.1f} per path), layers {m['layers']}; "
          f"Nix database loaded by nix-store --load-db in {m['build_seconds']['load_db']:.1f} s")
    for r in results:
        mm, b = r["manifest"], r["manifest"]["build_seconds"]
        n_full = sum(u["full_unit"] for u in mm["units"])
        lo, med, hi = r["closure_sizes"]
        how = (f"reused from cache in {r['prepare_seconds']:.1f} s (built in {b['total']:.1f} s"
               f"{', database copied' if b['load_db_reused'] else ', database loaded'})"
               if r["prepare_seconds"] < b["total"] else f"built in {r['prepare_seconds']:.1f} s")
        print(f"  {r['count']:>5} annotated ({n_full} FullUnit): {mm['unit_files']:,} unit files, "
              f"{mm['dropins']} drop-ins; closures {lo}/{med:.0f}/{hi} paths (min/median/max); {how}")
    where = ("ROOT/run mounted as a tmpfs, output directories in ROOT/run/systemd (as /run on a "
             "real system)"
             if all(r.get("run_tmpfs") for r in results) else
             f"output directories on {args.out_base} ({fs_type(args.out_base)}); ROOT/run could "
             f"not be mounted as a tmpfs (not root?)")
    print(f"Load average before/after: {load_before} / {os.getloadavg()[0]:.2f} (1 min); {where}")
    print(f"Method: {args.warmup} warm-up + {args.runs} counted runs, fresh output directory each, "
          f"posix_spawn→wait4 wall time (CPU ms = median user+sys of the same runs); peak RSS = max of {args.rss_runs} runs under "
          f"/usr/bin/time -f %M; baseline = one nix-store --query --requisites per annotated unit "
          f"(median of passes). \"cache warm\": the closure cache and the views' records of the "
          f"previous run are there (daemon-reload, nothing changed); \"no cache\": both are removed "
          f"before each run (first run after boot: /run is empty).")
    print()
    head = (f"{'annotated':>9} | {'closure cache':>13} | {'generator median/min/max ms':>28} | {'CPU ms':>7} | "
            f"{'peak RSS MiB':>12} | {'baseline ms':>11} | {'ratio':>7} | correctness")
    print(head)
    print("-" * len(head))
    failed = False
    for r in results:
        t = r["times"]
        med = statistics.median(t)
        base = statistics.median(r["baseline"])
        ok = not r["errors"]
        failed |= not ok
        corr = (f"{r['check']['checked']}/{r['count']} units exact "
                f"({r['check']['full_checked']} FullUnit)" if ok else f"WRONG ({len(r['errors'])} errors)")
        for label, prefix in (("warm", ""), ("none", "cold_")):
            t = r[prefix + "times"]
            med = statistics.median(t)
            gen = f"{fmt_ms(med)} / {fmt_ms(min(t))} / {fmt_ms(max(t))}"
            cpu = fmt_ms(statistics.median(r[prefix + "cpu"]))
            print(f"{r['count']:>9} | {label:>13} | {gen:>28} | {cpu:>7} | {max(r[prefix + 'rss']):>12.1f} | "
                  f"{fmt_ms(base):>11} | {base / med:>6.1f}× | {corr}")
        if r["count"] == args.annotated:
            spec = r
    print()
    t = spec["times"]
    med, rss = statistics.median(t), max(spec["rss"])
    base = statistics.median(spec["baseline"])
    ratio = base / med
    checks = [
        (f"generator median ({spec['count']} annotated)", f"{fmt_ms(med)} ms "
         f"(min {fmt_ms(min(t))}, max {fmt_ms(max(t))})", f"≤ {TARGET_MEDIAN_MS:.0f} ms",
         med <= TARGET_MEDIAN_MS),
        ("peak RSS", f"{rss:.1f} MiB", f"≤ {TARGET_RSS_MIB:.0f} MiB", rss <= TARGET_RSS_MIB),
        (f"baseline ({spec['count']} × nix-store -qR)", f"{fmt_ms(base)} ms", "", None),
        ("ratio baseline/generator", f"{ratio:.1f}×", f"≥ {TARGET_RATIO:.0f}×", ratio >= TARGET_RATIO),
    ]
    if args.annotated != 100 or args.paths != 100_000 or args.units != 1000:
        print("(note: the targets are for 100 annotated of 1,000 units over 100,000 paths)")
    ct = spec["cold_times"]
    cmed, crss = statistics.median(ct), max(spec["cold_rss"])
    cold_checks = [
        ("  no cache: generator median", f"{fmt_ms(cmed)} ms (min {fmt_ms(min(ct))}, max {fmt_ms(max(ct))})",
         f"≤ {TARGET_MEDIAN_MS:.0f} ms", cmed <= TARGET_MEDIAN_MS),
        ("  no cache: peak RSS", f"{crss:.1f} MiB", f"≤ {TARGET_RSS_MIB:.0f} MiB", crss <= TARGET_RSS_MIB),
        ("  no cache: ratio baseline/generator", f"{base / cmed:.1f}×", f"≥ {TARGET_RATIO:.0f}×",
         base / cmed >= TARGET_RATIO),
    ]
    print(f"{'target (cache warm)':<36} | {'measured':<34} | {'target':<9} |")
    print("-" * 90)
    missed = False
    for name, value, target, ok in checks + cold_checks:
        flag = "" if ok is None else mark(ok)
        if not name.startswith("  "):
            missed |= ok is False
        print(f"{name:<36} | {value:<34} | {target:<9} | {flag}")
    if spec.get("hyperfine_median") is not None:
        print(f"(hyperfine -N cross-check of the generator median: "
              f"{fmt_ms(spec['hyperfine_median'])} ms)")
    if spec.get("against"):
        print_against(spec, base)
    print(f"Bind directives seen: {', '.join(spec['check']['styles']) or 'none'}")
    sizes = spec["check"].get("dropin_bytes") or [0]
    print(f"Drop-in bytes per annotated unit: median {statistics.median(sizes):,.0f}, "
          f"max {max(sizes):,}, all {sum(sizes):,}")
    fl = spec.get("floor")
    if fl:
        print(f"I/O floor (benches/generation/floor.c, C, one thread, median of {args.runs}): reading "
              f"{fl['files']:,} unit files and drop-ins in {fl['dirs']} directories {fl['read_ms']:.1f} ms "
              f"+ writing the {fl['dropins']} drop-ins ({fl['bytes'] / 2**20:.1f} MiB) "
              f"{fl['write_ms']:.1f} ms = {fl['read_ms'] + fl['write_ms']:.1f} ms; "
              f"the generator's median is {med / (fl['read_ms'] + fl['write_ms']):.1f}× that")
    for r in results:
        if r["errors"]:
            print(f"\nCORRECTNESS FAILURE with {r['count']} annotated units ({r['system']}):")
            lost = [e for e in r["errors"] if "roots not bound" in e]
            if lost:
                print(f"  {len(lost)} of the {len(r['errors'])} failing units lose a whole root "
                      f"(its closure is missing); the line naming each lost root is given")
            for e in r["errors"][:20]:
                print(f"  {e}")
            if len(r["errors"]) > 20:
                print(f"  … and {len(r['errors']) - 20} more")
    if spec.get("profile"):
        print()
        print(spec["profile"], end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "manifest"} for r in results], f,
                      indent=1, default=str)
    if failed:
        return 2
    if missed and args.strict:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
