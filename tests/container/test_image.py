"""The Docker image, built and run with podman and no registry: the Dockerfile builds on a stand-in
`python:3.11-slim` made from Debian packages (standin-base.sh, cached between runs by the hash of its
recipe), two containers peer, a dataset published on one is replicated to the other once its members
voted a policy that accepts it, the health check passes and the containers stop cleanly; and compose.yaml
brings up its three nodes, healthy and peered.

Needs podman, runc and debootstrap (and root, for debootstrap and bind-mount ownership), plus Debian's and
PyPI's package servers during the build. Without them the tests skip, unless COMMUNS_REQUIRE_CONTAINERS=1
(as .ci/run sets it, after installing them), where a missing tool fails the test instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nodes import wait_for

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NEEDED = ("podman", "runc", "debootstrap")
# This kind of sandbox: crun cannot set up its cgroups and the default ulimits exceed the hard limits.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""
UID = 10001
IMAGE_SOURCES = """
import communs, hashlib, json, pathlib
root = pathlib.Path(communs.__path__[0])
print(json.dumps({f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
                  for p in root.glob("*/*.py")}))
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _missing() -> str | None:
    absent = [t for t in NEEDED if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed"
    if os.geteuid() != 0:
        return "needs root (debootstrap, bind-mount ownership)"
    return None


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    why = _missing()
    if why:
        if os.environ.get("COMMUNS_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"the container tests are required here, but {why}")
        pytest.skip(why)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return dict(os.environ, CONTAINERS_CONF=str(conf))


def run(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120.0) \
        -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120.0) \
        -> subprocess.CompletedProcess[str]:
    return run(env, "podman", *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> Iterator[str]:
    """The stand-in base (reused when its recipe is unchanged), then the image, built from this tree."""
    run(podman_env, "bash", str(HERE / "standin-base.sh"), timeout=900)
    tag = f"localhost/communs-test:{secrets.token_hex(4)}"
    started = time.monotonic()
    # Host network for the build: apt and pip reach their servers as this machine does (here through an
    # intercepting proxy, whose CA the stand-in base carries). A pip index set for this machine's pip
    # goes in too when the build can reach it (not a file:// one).
    index = [] if not os.environ.get("PIP_INDEX_URL", "").startswith(("http://", "https://")) \
        else ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    podman(podman_env, "build", "--format", "docker", "--pull=never", "--network", "host", *index, "-t", tag,
           str(ROOT), timeout=1200)
    # the image holds this tree's code, not a layer cached from an earlier build
    listing = podman(podman_env, "run", "--rm", "--entrypoint", "python", tag, "-c", IMAGE_SOURCES).stdout
    tree = {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for pkg in ("node", "protocol", "storage", "governance") for p in (ROOT / pkg).glob("*.py")}
    assert json.loads(listing) == tree
    size = podman(podman_env, "image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    print(f"image built in {time.monotonic() - started:.0f} s, {int(size) / 1e6:.0f} MB")
    yield tag
    podman(podman_env, "rmi", "-f", tag, check=False)
    podman(podman_env, "image", "prune", "-f", "--filter", "label=org.communs.stage=wheels", check=False)


@pytest.fixture
def network(podman_env: dict[str, str]) -> Iterator[str]:
    name = f"communs-test-{secrets.token_hex(4)}"
    podman(podman_env, "network", "create", name)
    yield name
    podman(podman_env, "network", "rm", "-f", name, check=False)


class Container:
    def __init__(self, env: dict[str, str], name: str, data: Path) -> None:
        self.env, self.name, self.data = env, name, data

    def cli(self, *args: str, timeout: float = 60.0) -> Any:
        out = podman(self.env, "exec", self.name, "communs", *args, "--data", "/data", "--json",
                     timeout=timeout).stdout
        return json.loads(out)

    def node_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.data / "node.json").read_text())
        return doc

    def logs(self) -> str:
        p = podman(self.env, "logs", self.name, check=False)
        return p.stdout + p.stderr


@pytest.fixture
def containers(podman_env: dict[str, str], image: str, network: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Container] = []

    def start(name: str, *command: str, owner: int = UID) -> Container:
        data = tmp_path / name
        data.mkdir()
        os.chown(data, owner, owner)
        podman(podman_env, "run", "-d", "--name", name, "--network", network, "-v", f"{data}:/data",
               image, *command)
        c = Container(podman_env, name, data)
        started.append(c)
        return c

    yield start
    for c in started:
        podman(podman_env, "rm", "-f", "-t", "2", c.name, check=False)


def test_two_containers_peer_replicate_under_a_voted_policy_and_stop_cleanly(
        podman_env: dict[str, str], image: str, containers: Any, tmp_path: Path) -> None:
    hc = podman(podman_env, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
    assert "healthcheck" in hc, "the image lost its HEALTHCHECK (built without --format docker?)"

    a = containers(f"a-{secrets.token_hex(3)}")  # the image's own command: run --data /data --init-if-missing
    wait_for(lambda: (a.data / "node.json").exists(), 90, 0.5, what=f"node a to start: {a.logs()}")
    peer_a = a.node_json()["peer_id"]
    # everything `init` takes, given to run --init-if-missing
    b = containers(f"b-{secrets.token_hex(3)}", "run", "--data", "/data", "--init-if-missing", "--name", "bee",
                   "--listen", "/ip4/0.0.0.0/tcp/7480", "--admin", "127.0.0.1:7481", "--no-dht",
                   "--bootstrap", f"/dns4/{a.name}/tcp/7470/p2p/{peer_a}")
    wait_for(lambda: (b.data / "node.json").exists(), 90, 0.5, what=f"node b to start: {b.logs()}")

    ids = podman(podman_env, "exec", a.name, "id").stdout
    assert "uid=10001(communs) gid=10001(communs)" in ids
    assert a.cli("status")["name"].startswith("communs-"), "the default name must not be the folder's ('data')"
    status_b = b.cli("status")
    assert status_b["name"] == "bee"
    assert any(x.endswith(f"/tcp/7480/p2p/{status_b['peer_id']}") for x in status_b["listen_addrs"])
    for c in (a, b):
        assert podman(podman_env, "healthcheck", "run", c.name).returncode == 0

    def peered() -> bool:
        return any(p["peer_id"] == peer_a for p in b.cli("peers")) and \
            any(p["peer_id"] == status_b["peer_id"] for p in a.cli("peers"))

    wait_for(peered, 60, 1.0, what="a and b to peer")
    # what each advertises to the other: its container's address, never the wildcard it listens on
    addrs_of_b = next(p["addrs"] for p in a.cli("peers") if p["peer_id"] == status_b["peer_id"])
    assert addrs_of_b and not any("/0.0.0.0/" in x for x in addrs_of_b), addrs_of_b
    assert not any("0.0.0.0" in x for x in a.cli("status")["listen_addrs"])

    # a publishes; b's sole member (its operator key) votes a policy that accepts the licence
    # (never from inside /data: the node refuses to publish its own data folder, keys and token included)
    payload = secrets.token_bytes(300_000)
    (tmp_path / "trees.csv").write_bytes(payload)
    podman(podman_env, "cp", str(tmp_path / "trees.csv"), f"{a.name}:/tmp/trees.csv")
    published = a.cli("publish", "/tmp/trees.csv", "--title", "Street trees", "--licence", "CC0-1.0")
    dataset = published.get("id") or published.get("manifest_id") or published
    (b.data / "rules.toml").write_text('accept_licences = ["CC0-1.0"]\n')
    os.chown(b.data / "rules.toml", UID, UID)
    proposal = b.cli("propose", "--key", "/data/operator.key", "--kind", "policy", "--file", "/data/rules.toml")
    b.cli("vote", proposal["id"], "yes", "--key", "/data/operator.key")

    def replicated() -> bool:
        return any(d["title"] == "Street trees" and d["state"] == "complete" for d in b.cli("datasets"))

    wait_for(replicated, 120, 1.0, what=f"b to replicate {dataset}")
    podman(podman_env, "exec", b.name, "mkdir", "/data/out")
    got = b.cli("get", next(d["id"] for d in b.cli("datasets") if d["title"] == "Street trees"), "/data/out")
    assert got is not None
    assert (b.data / "out" / "trees.csv").read_bytes() == payload

    for c in (a, b):
        podman(podman_env, "stop", "-t", "10", c.name, timeout=60)
        state = json.loads(podman(podman_env, "inspect", "--format", "{{json .State}}", c.name).stdout)
        assert state["ExitCode"] == 0, f"{c.name} did not stop cleanly: {state}\n{c.logs()}"
        log = c.logs()
        assert "Traceback" not in log and " ERROR " not in log, log
        assert "Failed to open TCP stream" not in log, log


def test_a_data_folder_the_node_cannot_write_gets_one_sentence(
        podman_env: dict[str, str], image: str, containers: Any) -> None:
    c = containers(f"ro-{secrets.token_hex(3)}", owner=0)  # what `docker run -v /host/dir:/data` makes
    code = podman(podman_env, "wait", c.name, timeout=90).stdout.strip()
    log = c.logs().strip()
    assert code == "1", log
    assert "Traceback" not in log
    assert log.startswith("communs: error: the data folder /data is not writable by this process (uid 10001"), log
    assert "chown -R 10001:10001" in log and len(log.splitlines()) == 1, log


def _compose_bin() -> str:
    found = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    if not Path(found).exists():
        pytest.fail("podman-compose is not installed (it is in the test extras: pip install -e '.[test]')")
    return found


def test_compose_file_brings_up_three_healthy_peered_nodes(
        podman_env: dict[str, str], image: str, tmp_path: Path) -> None:
    """compose.yaml as shipped, with two changes for a test: the image just built (no second build), and
    no port published on the host (the nodes talk over the project's network)."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for svc in doc["services"].values():
        svc.pop("build", None)
        svc.pop("ports", None)
        svc["image"] = image
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    project = f"communs-test-{secrets.token_hex(3)}"
    compose = [_compose_bin(), "-p", project, "-f", str(tmp_path / "compose.yaml")]
    try:
        run(podman_env, *compose, "up", "-d", timeout=300)
        names = {}
        for line in podman(podman_env, "ps", "-a", "--filter", f"label=io.podman.compose.project={project}",
                           "--format", '{{.Names}} {{index .Labels "com.docker.compose.service"}}').stdout.splitlines():
            name, service = line.split()
            names[service] = name
        assert sorted(names) == ["node1", "node2", "node3"], names

        def cli(service: str, *args: str) -> Any:
            return json.loads(podman(podman_env, "exec", names[service], "communs", *args, "--data", "/data",
                                     "--json").stdout)

        # no systemd here to run podman's health-check timers: run each check as the timer would
        def healthy(service: str) -> bool:
            podman(podman_env, "healthcheck", "run", names[service], check=False)
            state = json.loads(podman(podman_env, "inspect", "--format", "{{json .State}}", names[service]).stdout)
            health = state.get("Health") or state.get("Healthcheck") or {}
            return bool(health.get("Status") == "healthy")

        for service in names:
            wait_for(lambda s=service: healthy(s), 120, 2.0, what=f"{service} to be healthy")
        peer1 = cli("node1", "status")["peer_id"]
        for service in ("node2", "node3"):
            assert cli(service, "status")["name"] == service
            wait_for(lambda s=service: any(p["peer_id"] == peer1 for p in cli(s, "peers")), 60, 1.0,
                     what=f"{service} to peer with node1")
        wait_for(lambda: len(cli("node1", "peers")) >= 2, 60, 1.0, what="node1 to list node2 and node3")
    finally:
        down = run(podman_env, *compose, "down", "-v", "-t", "10", check=False, timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]
