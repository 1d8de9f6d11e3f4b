#!/usr/bin/env python3
"""A federation on one machine: N Communs nodes on 127.0.0.1, or a scripted walkthrough (`--demo`).

    scripts/federation [--nodes N] [--dir DIR] [--keep]   # start N nodes, print how to use them, wait for Ctrl-C
    scripts/federation --demo [--dir DIR] [--keep]        # three coops: publish, vote, replicate, restart, audit

Every node is a real `communs run` process with its own data folder under DIR (a new temporary folder
by default), listening on 127.0.0.1 with ports chosen by the system, and bootstrapped to the first
node. The script owns what it starts and cleans it up on every way out (normal end, Ctrl-C, SIGTERM,
an error): each node runs in its own process group and gets SIGTERM, then SIGKILL if it has not
stopped after 5 s; the temporary folder is removed unless --keep or --dir is given. Run it through
the `scripts/federation` wrapper, which sets up `.venv` on first use.

The demo checks its own outcome (which node holds which dataset in which state, a dataset read back
byte for byte, the governance log audited) and exits 0 only when everything replicated as voted. Its
last line on stdout is one JSON object with that outcome, for tests and scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from communs.node.cli.client import AdminClient, ClientError
from rich.console import Console
from rich.table import Table
from rich.text import Text

COMMUNS = [sys.executable, "-m", "communs.node.cli.main"]
STOP_GRACE_S = 5.0
READY_TIMEOUT_S = 30.0
STEP_TIMEOUT_S = 40.0
T0 = time.monotonic()
console = Console(highlight=False, soft_wrap=True)
COLOURS = {"coop-a": "bold cyan", "coop-b": "bold magenta", "coop-c": "bold yellow"}

try:  # Linux: a node gets SIGTERM if this script dies without cleaning up (e.g. SIGKILL)
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl  # noqa: B018 - fail here, not in the child, when there is no prctl
except (OSError, AttributeError):
    _LIBC = None


def _child_setup() -> None:
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class FederationError(Exception):
    """Something the walkthrough needed did not happen; one sentence says what."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: stop everything and leave."""


def say(who: str, text: str, style: str = "") -> None:
    line = Text(f"{time.strftime('%H:%M:%S')} {time.monotonic() - T0:5.1f}s ", style="dim")
    line.append(f"{who:<7} ", style=COLOURS.get(who, "bold"))
    line.append(text, style=style)
    console.print(line)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def wait_for(what: str, pred: Callable[[], Any], timeout: float = STEP_TIMEOUT_S, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = pred()
        except ClientError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise FederationError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


# ---- one node process ----------------------------------------------------------------------------


class NodeProcess:
    """One `communs run` process and its folder; the CLI and the admin API against it."""

    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.data = base / name
        self.log_path = base / "logs" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        proc = subprocess.run([*COMMUNS, *args, "--data", str(self.data)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise FederationError(f"communs {args[0]} on {self.name} failed: {proc.stderr.strip()}")
        return proc.stdout

    def cli_json(self, *args: str, timeout: float = 60.0) -> Any:
        return json.loads(self.cli(*args, "--json", timeout=timeout))

    def init(self, *args: str) -> dict[str, Any]:
        if (self.data / "config.toml").exists():
            raise FederationError(f"{self.data} already holds a node; give --dir a new or empty folder")
        doc: dict[str, Any] = self.cli_json("init", "--name", self.name, "--listen", "/ip4/127.0.0.1/tcp/0",
                                            "--admin", "127.0.0.1:0", *args)
        # publishing reads only from allowed folders: this federation's folder (the demo's files), and the
        # defaults (home and temporary folder) for what you publish yourself
        allowed = [str(self.data.parent.resolve()), str(Path.home()), tempfile.gettempdir()]
        with open(self.data / "config.toml", "a", encoding="utf-8") as fh:
            fh.write("\n[publish]\nallowed_paths = [" + ", ".join(json.dumps(a) for a in allowed) + "]\n")
        return doc

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*COMMUNS, "run", "--data", str(self.data)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_child_setup,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        path = self.data / "node.json"
        while True:
            if self.proc.poll() is not None:
                raise FederationError(f"{self.name} exited with code {self.proc.returncode} while starting; "
                                      f"its log: {self.log_path}\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(path.read_text())
                if info.get("pid") == self.proc.pid:
                    self.info = info
                    return
            if time.monotonic() > deadline:
                raise FederationError(f"{self.name} was not ready within {timeout:.0f} s; its log: {self.log_path}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def addr(self) -> str:
        return str(self.info["listen_addrs"][0])

    @property
    def peer_id(self) -> str:
        return str(self.info["peer_id"])

    def api(self, path: str) -> Any:
        return AdminClient.for_folder(self.data, timeout=10.0).get(path)

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after the grace period; the exit code (negative: killed by a signal)."""
        stop_all([self])
        assert self.proc is not None
        code = self.proc.returncode
        self.proc = None
        return code


def stop_all(nodes: list[NodeProcess]) -> None:
    running = [n for n in nodes if n.running]
    for n in running:
        n.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for n in running:
        assert n.proc is not None
        try:
            n.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(n.name, f"did not stop within {STOP_GRACE_S:.0f} s of SIGTERM; killing it", "red")
            n.signal(signal.SIGKILL)
            n.proc.wait(5)


class Federation:
    """The nodes and the folder this run owns; `close()` undoes everything, whatever happened."""

    def __init__(self, base: Path, owns_base: bool, keep: bool) -> None:
        self.base = base
        self.owns_base = owns_base
        self.keep = keep
        self.nodes: list[NodeProcess] = []

    def add(self, name: str) -> NodeProcess:
        node = NodeProcess(self.base, name)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        stop_all(self.nodes)
        if self.owns_base and not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main flow; during cleanup they are ignored
    (cleanup is bounded by the stop grace period)."""

    def handler(signum: int, _frame: Any) -> None:
        ignore_signals()
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)
    try:
        yield
    finally:
        ignore_signals()


def ignore_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def communs_command() -> str:
    """How to call the CLI from the user's shell: `communs` if it is this installation's, else its path."""
    ours = Path(sys.executable).parent / "communs"
    found = shutil.which("communs")
    if found and ours.exists() and Path(found).resolve() == ours.resolve():
        return "communs"
    return str(ours) if ours.exists() else "communs"


def connected(node: NodeProcess, other: NodeProcess) -> bool:
    return any(p["peer_id"] == other.peer_id for p in node.api("/api/v1/peers"))


def knows(node: NodeProcess, count: int) -> bool:
    return len(node.api("/api/v1/datasets")) == count


# ---- plain mode: N nodes until Ctrl-C -------------------------------------------------------------


def run_plain(fed: Federation, n: int) -> int:
    first = fed.add("node1")
    first.init()
    first.start()
    first.wait_ready()
    say(first.name, f"ready: {first.addr}")
    others = [fed.add(f"node{i}") for i in range(2, n + 1)]
    for node in others:
        node.init("--bootstrap", first.addr)
        node.start()
    for node in others:
        node.wait_ready()
        say(node.name, f"ready: bootstrapped to {first.name}")
    for node in others:
        wait_for(f"{node.name} connecting to {first.name}", functools.partial(connected, node, first), 20)
    cmd = communs_command()
    console.print(f"\n{n} Communs node(s) in {fed.base} (logs in {fed.base / 'logs'}):")
    for node in fed.nodes:
        console.print(Text(node.name, style="bold"))
        console.print(f"  peer id    {node.peer_id}\n  libp2p     {node.addr}\n"
                      f"  admin API  {node.info['admin_url']}  (token in {node.data / 'admin.token'})\n"
                      f"  CLI        {cmd} status --data {node.data}")
    console.print(f"\nTry, e.g.:\n"
                  f"  {cmd} publish FILE_OR_FOLDER --title T --licence CC-BY-4.0 --data {first.data}\n"
                  f"  {cmd} datasets --data {fed.nodes[-1].data}\n"
                  f"Each node's sole founding member's key is its DATA/operator.key; to let the last node keep "
                  f"CC-BY-4.0 datasets:\n"
                  f"  echo 'accept_licences = [\"CC-BY-4.0\"]' > rules.toml\n"
                  f"  {cmd} propose --key {fed.nodes[-1].data / 'operator.key'} --kind policy --file rules.toml "
                  f"--data {fed.nodes[-1].data}\n"
                  f"  {cmd} vote PROPOSAL_ID yes --key {fed.nodes[-1].data / 'operator.key'} "
                  f"--data {fed.nodes[-1].data}\n")
    leaving = "keeps" if (fed.keep or not fed.owns_base) else "removes"
    say("all", f"{n} nodes running; Ctrl-C stops them and {leaving} {fed.base}")
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        for node in fed.nodes:
            if not node.running and node.name not in reported:
                reported.add(node.name)
                assert node.proc is not None
                say(node.name, f"exited on its own with code {node.proc.returncode}; see {node.log_path}", "red")


# ---- the walkthrough ------------------------------------------------------------------------------


def gen_trees(folder: Path, scan_bytes: int) -> None:
    """An inventory CSV and a large binary file, so that replication takes long enough to watch."""
    rnd = random.Random(1)
    target = 2_000_000
    species = [("Platanus", "x acerifolia"), ("Tilia", "cordata"), ("Acer", "platanoides"),
               ("Quercus", "robur"), ("Aesculus", "hippocastanum"), ("Celtis", "australis")]
    rows = ["tree_id,genus,species,height_m,circumference_cm,planted,lat,lon"]
    size = len(rows[0])
    i = 0
    while size < target:
        g, s = rnd.choice(species)
        row = (f"{i},{g},{s},{rnd.uniform(2, 30):.1f},{rnd.randint(20, 400)},{rnd.randint(1880, 2024)},"
               f"{45.70 + rnd.random() * 0.1:.6f},{4.78 + rnd.random() * 0.15:.6f}")
        rows.append(row)
        size += len(row) + 1
        i += 1
    folder.mkdir(parents=True)
    (folder / "street-trees.csv").write_text("\n".join(rows) + "\n")
    with open(folder / "canopy-scan.bin", "wb") as fh:  # random bytes standing in for a LiDAR scan
        for _ in range(scan_bytes >> 20):
            fh.write(os.urandom(1 << 20))


def gen_map(folder: Path, nodes: int, extra: int = 0) -> None:
    rnd = random.Random(2)
    amenities = ["bench", "drinking_water", "bicycle_parking", "toilets", "library", "fablab"]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="communs-demo">']
    for i in range(nodes + extra):
        lines.append(f'  <node id="{1000 + i}" lat="{45.70 + rnd.random() * 0.1:.7f}" '
                     f'lon="{4.78 + rnd.random() * 0.15:.7f}"><tag k="amenity" v="{rnd.choice(amenities)}"/></node>')
    lines.append("</osm>")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "map-extract.osm").write_text("\n".join(lines) + "\n")


def gen_survey(folder: Path) -> None:
    rnd = random.Random(3)
    rows = ["school,year,pupils,bikes_per_100,trees_planted"]
    rows += [f"school-{i:03d},{y},{rnd.randint(80, 900)},{rnd.randint(0, 60)},{rnd.randint(0, 40)}"
             for i in range(400) for y in range(2015, 2025)]
    folder.mkdir(parents=True)
    (folder / "school-survey.csv").write_text("\n".join(rows) + "\n")


def gen_tools(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "tools.csv").write_text(
        "tool,kind,where,bookable\nlaser cutter,machine,workshop,yes\n3D printer,machine,workshop,yes\n"
        "soldering station,bench,electronics,no\ngreen wood lathe,machine,yard,yes\n")
    (folder / "README.txt").write_text("The fablab's shared tools. Code under MIT, data under CC0-1.0: pick one.\n")


def same_tree(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all((a / p).read_bytes() == (b / p).read_bytes() for p in fa)


def metric(node: NodeProcess, name: str) -> float:
    client = AdminClient.for_folder(node.data, timeout=10.0)
    req = urllib.request.Request(client.base_url + "/metrics", headers={"Authorization": f"Bearer {client.token}"})
    with urllib.request.urlopen(req, timeout=10.0) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class Demo:
    """Three coops. A publishes under four licences; B's three members vote a policy (two of three
    yes); C's operator enacts its own; replication follows the votes; C is stopped, misses a new
    version, restarts and catches up; B's governance log is audited."""

    def __init__(self, fed: Federation, scan_bytes: int) -> None:
        self.fed = fed
        self.scan_bytes = scan_bytes
        self.src = fed.base / "src"
        self.announced: set[tuple[str, str]] = set()
        self.result: dict[str, Any] = {"ok": False, "dir": str(fed.base)}  # printed last, as one JSON line
        self.progress_shown: dict[tuple[str, str], float] = {}

    # -- helpers --

    @staticmethod
    def states(node: NodeProcess) -> dict[str, str]:
        return {f"{d['title']} v{d['version']}": d["state"] for d in node.api("/api/v1/datasets")}

    def watch(self, nodes: list[NodeProcess], goal: Callable[[], bool], what: str,
              timeout: float = STEP_TIMEOUT_S) -> None:
        """Show replication as it happens (bytes done per dataset, then completion) until `goal`."""
        deadline = time.monotonic() + timeout
        while True:
            for node in nodes:
                if not node.running:
                    continue
                try:
                    report = node.api("/api/v1/replication")
                    datasets = node.api("/api/v1/datasets")
                except ClientError:
                    continue
                for job in report.get("active", []):
                    key = (node.name, job["id"])
                    now = time.monotonic()
                    if now - self.progress_shown.get(key, 0.0) >= 0.4 and job["bytes_total"]:
                        self.progress_shown[key] = now
                        pct = 100 * job["bytes_done"] / job["bytes_total"]
                        say(node.name, f"fetching {job['title']} v{job['version']}: {pct:5.1f}% "
                                       f"({mb(job['bytes_done'])} of {mb(job['bytes_total'])})")
                for d in datasets:
                    key = (node.name, d["id"])
                    if d["state"] == "complete" and key not in self.announced:
                        self.announced.add(key)
                        say(node.name, f"complete: {d['title']} v{d['version']} ({mb(d['size'])}, "
                                       f"every chunk verified)", "green")
            if goal():
                return
            if time.monotonic() > deadline:
                raise FederationError(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(0.15)

    def enact(self, node: NodeProcess, voters: list[tuple[str, Path, str]], accept: list[str]) -> None:
        """A policy proposal by the first voter, then each voter's ballot; the tally after each."""
        rules = self.fed.base / f"{node.name}-policy.toml"
        rules.write_text("# the licences this coop's members want their node to keep copies of\n"
                         "accept_licences = [" + ", ".join(f'"{a}"' for a in accept) + "]\n")
        proposer, key, _ = voters[0]
        pid = node.cli_json("propose", "--key", str(key), "--kind", "policy", "--file", str(rules),
                            "--closes-in", "1h")["id"]
        say(node.name, f"{proposer} proposes a licence policy accepting {', '.join(accept)} "
                       f"(proposal {pid[:16]}…, open 1 h or until the ballots decide it)")
        for who, key, choice in voters:
            tally = node.cli_json("vote", pid, choice, "--key", str(key))["tally"]
            say(node.name, f"{who} votes {choice}: {tally['summary']}",
                "green" if tally["closed"] and tally["outcome"] == "passed" else "")
        wait_for(f"{node.name}'s policy to take effect",
                 lambda: sorted(node.cli_json("policy")["policy"]["accept_licences"]) == sorted(accept), 10)
        say(node.name, f"policy in force: accepts {', '.join(sorted(accept))}; the node re-evaluates every "
                       f"manifest it knows")

    # -- the walkthrough --

    def run(self) -> int:
        base = self.fed.base
        say("demo", f"a federation of three cooperatives in {base}")
        a, b, c = self.fed.add("coop-a"), self.fed.add("coop-b"), self.fed.add("coop-c")

        # coop B's members each create their own key (on their own machines, in real life); the
        # node only knows their public keys, from the founding roster.
        members = base / "members"
        members.mkdir(parents=True)
        keys_b = {}
        for who in ("alice", "bob", "chloe"):
            a.cli("member", "keygen", "--out", str(members / f"{who}.key"))
            keys_b[who] = members / f"{who}.key"
        a.init()
        a.start()
        a.wait_ready()
        say(a.name, f"ready: {a.addr}")
        founders = [arg for who in keys_b for arg in ("--founder", f"{keys_b[who]}.pub")]
        b.init("--bootstrap", a.addr, *founders)
        c.init("--bootstrap", a.addr)
        b.start()
        c.start()
        b.wait_ready()
        say(b.name, "ready; founding members alice, bob and chloe (they hold their own keys, in "
                    f"{members}; the node only verifies their signatures)")
        c.wait_ready()
        say(c.name, "ready; its operator is its sole founding member (key in coop-c/operator.key)")
        for n in (b, c):
            wait_for(f"{n.name} connecting to coop-a", functools.partial(connected, n, a), 20)
            say(n.name, "connected to coop-a (bootstrap)")

        # 1. coop A publishes under four licences
        gen_trees(self.src / "trees", self.scan_bytes)
        gen_map(self.src / "map", 25_000)
        gen_survey(self.src / "survey")
        gen_tools(self.src / "tools")
        plan = [("Street trees", "trees", "CC-BY-4.0"), ("Neighbourhood map extract", "map", "ODbL-1.0"),
                ("School mobility survey", "survey", "CC-BY-NC-4.0"), ("Fablab tool list", "tools", "MIT OR CC0-1.0")]
        published: dict[str, dict[str, Any]] = {}
        for title, folder, licence in plan:
            doc = a.cli_json("publish", str(self.src / folder), "--title", title, "--licence", licence)
            published[folder] = doc
            size = sum(p.stat().st_size for p in (self.src / folder).rglob("*") if p.is_file())
            say(a.name, f"published {title!r} under {licence} ({mb(size)}): manifest {doc['id'][:16]}…")
        for n in (b, c):
            wait_for(f"{n.name} learning the 4 manifests", functools.partial(knows, n, 4), 30)
            counts = sorted(set(self.states(n).values()))
            say(n.name, f"learned the 4 signed manifests from the overlay; states: {', '.join(counts)} - "
                        "a new node's policy accepts no licence")

        # 2. the coops' members vote what their nodes keep
        self.enact(c, [("operator", c.data / "operator.key", "yes")], ["ODbL-1.0", "CC-BY-NC-4.0"])
        # (chloe votes first: once two of three said yes, the outcome is decided and the vote closes early)
        self.enact(b, [("alice", keys_b["alice"], "yes"), ("chloe", keys_b["chloe"], "no"),
                       ("bob", keys_b["bob"], "yes")], ["CC-BY-4.0", "ODbL-1.0", "CC0-1.0"])

        # 3. replication follows the votes
        expect: dict[str, dict[str, str]] = {
            a.name: {"Street trees v1": "own", "Neighbourhood map extract v1": "own",
                     "School mobility survey v1": "own", "Fablab tool list v1": "own"},
            b.name: {"Street trees v1": "complete", "Neighbourhood map extract v1": "complete",
                     "School mobility survey v1": "not-wanted", "Fablab tool list v1": "complete"},
            c.name: {"Street trees v1": "not-wanted", "Neighbourhood map extract v1": "complete",
                     "School mobility survey v1": "complete", "Fablab tool list v1": "not-wanted"},
        }
        self.watch([b, c], lambda: self.states(b) == expect[b.name] and self.states(c) == expect[c.name],
                   "replication as voted")
        reason = next(d["reason"] for d in b.api("/api/v1/datasets") if d["title"] == "School mobility survey")
        say(b.name, f"not kept: 'School mobility survey' - {reason}", "dim")

        # 4. coop C goes down, misses a new version, comes back and catches up
        code = c.stop()
        say(c.name, f"stopped (SIGTERM; exit code {code})")
        gen_map(self.src / "map-v2", 25_000, extra=2_500)
        v2 = a.cli_json("publish", str(self.src / "map-v2"), "--title", "Neighbourhood map extract",
                        "--licence", "ODbL-1.0", "--dataset", published["map"]["dataset"])
        say(a.name, f"published version {v2['version']} of 'Neighbourhood map extract' while coop-c is down: "
                    f"manifest {v2['id'][:16]}…")
        for n in (a, b, c):
            expect[n.name]["Neighbourhood map extract v2"] = "own" if n is a else "complete"
        self.watch([b], lambda: self.states(b) == expect[b.name], "coop-b replicating version 2")
        started = time.monotonic()
        c.start()
        c.wait_ready()
        say(c.name, f"restarted in {time.monotonic() - started:.1f} s; it dials coop-a again and syncs catalogs")
        wait_for("coop-c learning version 2 by catalog sync",
                 lambda: "Neighbourhood map extract v2" in self.states(c), 30)
        how = ("by catalog sync with its peers" if metric(c, "communs_sync_records_total") > 0
               else "from an announcement its peers' gossip still held")
        say(c.name, f"learned 'Neighbourhood map extract' v2 {how} (it was down when it was published)")
        self.watch([c], lambda: self.states(c) == expect[c.name], "coop-c replicating version 2")
        fetched = metric(c, "communs_bytes_fetched_total")
        v2_size = next(d["size"] for d in c.api("/api/v1/datasets") if d["id"] == v2["id"])
        note = " (the chunks it shares with v1 were already here)" if fetched < v2_size else ""
        say(c.name, f"caught up: fetched {mb(fetched)} for a {mb(v2_size)} version{note}")

        # 5. checks anyone can run
        audit = b.cli_json("audit", "--export", str(base / "coop-b-governance.log"))
        say(b.name, f"communs audit: governance log {'intact' if audit['ok'] else 'BROKEN'}, "
                    f"{audit['entries']} signed entries (exported to coop-b-governance.log)",
            "green" if audit["ok"] else "red")
        verify = c.cli_json("verify")
        say(c.name, f"communs verify: {verify['checked']} chunks re-hashed, "
                    f"{'all intact' if verify['ok'] else 'some corrupt'}", "green" if verify["ok"] else "red")
        out = base / "out" / "map-v2"
        c.cli("get", v2["id"], str(out))
        identical = same_tree(self.src / "map-v2", out)
        say(c.name, f"communs get: version 2 read back from coop-c is "
                    f"{'identical to what coop-a published' if identical else 'DIFFERENT'}",
            "green" if identical else "red")

        # 6. who holds what
        actual = {n.name: self.states(n) for n in (a, b, c)}
        ok = actual == expect and audit["ok"] and verify["ok"] and identical
        self.summary(plan, actual, expect)
        elapsed = time.monotonic() - T0
        if ok:
            say("demo", f"done in {elapsed:.0f} s: every dataset is where its coop's members voted it", "bold green")
        else:
            say("demo", "the outcome differs from what was voted (see the table)", "bold red")
        self.result = {"ok": ok, "dir": str(base), "expected": expect, "states": actual, "audit_ok": audit["ok"],
                       "verify_ok": verify["ok"], "get_identical": identical, "seconds": round(elapsed, 1)}
        return 0 if ok else 1

    def summary(self, plan: list[tuple[str, str, str]], actual: dict[str, dict[str, str]],
                expect: dict[str, dict[str, str]]) -> None:
        licences = {title: lic for title, _, lic in plan}
        table = Table(title="Who holds what", title_justify="left")
        table.add_column("dataset")
        table.add_column("licence")
        for name in expect:
            table.add_column(name)
        styles = {"own": "cyan", "complete": "green", "not-wanted": "dim", "in-progress": "yellow"}
        for label in sorted(expect["coop-a"]):
            cells = []
            for name in expect:
                got, want = actual[name].get(label, "unknown"), expect[name][label]
                cells.append(Text(got, style=styles.get(got, "")) if got == want
                             else Text(f"{got} (expected {want})", style="bold red"))
            table.add_row(label, licences[label.rsplit(" v", 1)[0]], *cells)
        console.print(table)


# ---- entry point ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/federation",
        description="Start a federation of Communs nodes on 127.0.0.1 and wait for Ctrl-C, or run a "
                    "scripted walkthrough of one (--demo).")
    parser.add_argument("--nodes", type=int, metavar="N", help="how many nodes (default 3; --demo uses 3)")
    parser.add_argument("--dir", metavar="DIR", help="put the nodes' folders here (kept afterwards); "
                                                     "default: a new temporary folder, removed at the end")
    parser.add_argument("--demo", action="store_true", help="run the walkthrough, check its outcome, stop")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder at the end")
    parser.add_argument("--scan-mb", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = 3 if args.nodes is None else args.nodes
    if args.demo and n != 3:
        parser.error("--demo runs exactly three nodes")
    if not 1 <= n <= 50:
        parser.error("--nodes must be from 1 to 50")
    if args.dir:
        base = Path(args.dir).expanduser().resolve()
        base.mkdir(parents=True, exist_ok=True)
        owns = False
    else:
        base = Path(tempfile.mkdtemp(prefix="communs-federation-"))
        owns = True
    fed = Federation(base, owns, args.keep)
    demo = Demo(fed, args.scan_mb << 20) if args.demo else None
    code = 1
    with signals_interrupt():
        try:
            code = demo.run() if demo is not None else run_plain(fed, n)
        except Interrupted as exc:
            say("all", f"{exc}: stopping every node")
            code = 130 if demo is not None else 0
            if demo is not None:
                demo.result["error"] = f"interrupted by {exc}"
        except (FederationError, ClientError, subprocess.TimeoutExpired) as exc:
            say("error", str(exc), "bold red")
            code = 1
            if demo is not None:
                demo.result["error"] = str(exc)
        finally:
            ignore_signals()  # cleanup is bounded by the stop grace period; let it finish
            fed.close()
            where = f"kept in {base}" if (args.keep or not owns) else f"{base} removed"
            say("all", f"every node stopped; {where}")
    if demo is not None:
        console.file.flush()
        print(json.dumps(demo.result, sort_keys=True), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
