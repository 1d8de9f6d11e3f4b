"""The node's data folder and its `config.toml`.

Everything a node owns lives in one folder, so that a backup is a copy of that folder and
two nodes on one machine never share a file. Every value read from `config.toml` is checked
here, at load, so that a typo is reported as one sentence naming the key, not as a traceback
deep inside libp2p or aiohttp later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from communs.node.exchange.bandwidth import LimitError, check_rate
from communs.node.folder import (  # noqa: F401 - the data folder's names, re-exported for their users here
    ADMIN_TOKEN_FILE,
    CATALOG_FILE,
    CHUNKS_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    NODE_JSON,
    NODE_KEY_FILE,
    OPERATOR_KEY_FILE,
)
from communs.node.services.storage_config import StorageConfig, StorageConfigError, parse_storage
from communs.protocol.libp2p.addrs import BadMultiaddr, components

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/7470"
DEFAULT_ADMIN = "127.0.0.1:7471"
DEFAULT_FEDERATION = "communs"
_FEDERATION_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """The data folder or its config is missing, damaged or invalid; one sentence says which."""


@dataclass
class Config:
    name: str = "communs-node"
    federation: str = DEFAULT_FEDERATION
    listen: list[str] = field(default_factory=lambda: [DEFAULT_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    mdns: bool = False
    dht: bool = True
    admin: str = DEFAULT_ADMIN
    admin_allow_remote: bool = False
    log_level: str = "info"
    log_format: str = "text"
    max_request_bytes: int = 1 << 20
    # [connections]: inbound limits (protocol/connlimits.py, SECURITY.md "Connection and memory limits")
    conn_max_inbound: int = 300
    conn_per_ip: int = 8
    conn_limit_loopback: bool = False  # loopback is exempt from per_ip unless this is set (as in go-libp2p)
    conn_handshake_s: float = 10.0
    # [gossip]: IP colocation scoring (protocol/gossipguard.py, SECURITY.md): more than this many peers
    # behind one address are penalised, except in these networks (loopback: a federation on one machine).
    ip_colocation_threshold: int = 10
    ip_colocation_exempt: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    storage: StorageConfig = field(default_factory=StorageConfig)
    # folders the admin API may publish from; None: node/publish_paths.py's default (home and temp folder)
    publish_allowed_paths: list[str] | None = None
    # [public]: the optional public face (node/http/public/, README.md "Publishing to portals"); off when empty
    public_listen: str = ""
    public_base_url: str = ""
    public_datasets: str = "own"  # or "held": own plus complete replicas
    public_title: str = ""
    public_description: str = ""
    public_publisher_name: str = ""
    public_homepage: str = ""
    public_contact: str = ""  # an email address
    public_publisher_type: str = ""  # an ADMS publisher type (node/http/public/vocab.py), or none
    public_licence: str = ""  # the SPDX licence of the catalog's own metadata, or none
    public_language: str = ""  # the EU language code of the catalog's descriptions (FRA, ENG...), or none
    public_page_size: int = 50
    public_downloads_per_ip: int = 4
    public_requests_per_minute: int = 600
    public_slow_client_s: float = 30.0
    # [governance]: per-peer budgets of /communs/governance/1 (protocol/README.md 5.6)
    gov_reads_per_minute: int = 120
    gov_submits_per_minute: int = 30
    # [copies]: holding claims and proof of holding (node/services/copies.py); short values only for tests
    claim_ttl_s: int = 86400
    claims_sync_s: float = 300.0
    challenge_every_s: float = 600.0
    release_grace_s: int = 3600
    # [limits]: chunk bytes per second sent and received (node/exchange/bandwidth.py); 0: no limit
    limit_upload_bytes_per_s: int = 0
    limit_download_bytes_per_s: int = 0

    @property
    def topic(self) -> str:
        return f"/communs/{self.federation}/announce/1"

    def to_toml(self) -> str:
        doc: dict[str, dict[str, object]] = {
            "node": {"name": self.name, "federation": self.federation, "listen": self.listen,
                     "bootstrap": self.bootstrap, "mdns": self.mdns, "dht": self.dht},
            "admin": {"listen": self.admin, "allow_remote": self.admin_allow_remote},
            "log": {"level": self.log_level, "format": self.log_format},
        }
        if not self.storage.is_default():
            doc["storage"] = self.storage.to_doc()
        # Every other section, with the keys that differ from the defaults, so that rewriting the file
        # (`communs storage migrate`) keeps what the operator set.
        default = Config()
        for section, keys in _SCHEMA.items():
            if section in ("node", "admin", "log", "storage"):
                continue
            part = {key: getattr(self, attr) for key, (attr, _kind) in keys.items()
                    if getattr(self, attr) != getattr(default, attr) and getattr(self, attr) is not None}
            if part:
                doc[section] = part
        return "# Communs node configuration. See README.md, 'Operator's guide'.\n" + tomli_w.dumps(doc)

    def validate(self) -> None:
        check_name(self.name)
        if not 5 <= self.claim_ttl_s <= 2 * 86400:
            raise ConfigError("copies.claim_ttl_s must be between 5 and 172800 seconds")
        for what, value in (("claims_sync_s", self.claims_sync_s), ("challenge_every_s", self.challenge_every_s)):
            if not 0.1 <= value <= 86400:
                raise ConfigError(f"copies.{what} must be between 0.1 and 86400 seconds")
        if not 0 <= self.release_grace_s <= 30 * 86400:
            raise ConfigError("copies.release_grace_s must be between 0 and 2592000 seconds")
        check_federation(self.federation)
        if not self.listen:
            raise ConfigError("node.listen must name at least one multiaddr")
        if self.ip_colocation_threshold < 1:
            raise ConfigError("gossip.ip_colocation_threshold must be at least 1")
        for net in self.ip_colocation_exempt:
            try:
                ipaddress.ip_network(str(net), strict=False)
            except ValueError:
                raise ConfigError(f"gossip.ip_colocation_exempt: {net!r} is not an IP network "
                                  "such as 127.0.0.0/8") from None
        for addr in self.listen:
            check_listen_multiaddr(addr)
        for addr in self.bootstrap:
            check_peer_multiaddr(addr)
        host, _port = parse_host_port(self.admin)
        if not self.admin_allow_remote and not is_loopback(host):
            raise ConfigError(
                f"admin.listen {self.admin} is not a loopback address; set admin.allow_remote = true "
                "in config.toml to expose the admin API beyond this machine")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}, not '{self.log_level}'")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log.format must be 'text' or 'json', not '{self.log_format}'")
        if self.conn_max_inbound < 1 or self.conn_per_ip < 1:
            raise ConfigError("connections.max_inbound and connections.per_ip must be at least 1")
        if not 0 < self.conn_handshake_s <= 600:
            raise ConfigError("connections.handshake_s must be more than 0 and at most 600 seconds")
        self._validate_public()
        if self.gov_reads_per_minute < 1 or self.gov_submits_per_minute < 1:
            raise ConfigError("governance.reads_per_minute and governance.submits_per_minute must be at least 1")
        for key, rate in (("upload_bytes_per_s", self.limit_upload_bytes_per_s),
                          ("download_bytes_per_s", self.limit_download_bytes_per_s)):
            try:
                check_rate(rate, f"limits.{key}")
            except LimitError as exc:
                raise ConfigError(str(exc)) from None
        for folder in self.publish_allowed_paths or []:
            if not os.path.isabs(os.path.expanduser(folder)):
                raise ConfigError(f"publish.allowed_paths must list absolute folders, not '{folder}'")

    def _validate_public(self) -> None:
        if not self.public_listen:
            return
        parse_host_port(self.public_listen, "public.listen")
        if self.public_datasets not in ("own", "held"):
            raise ConfigError(f"public.datasets must be 'own' or 'held', not '{self.public_datasets}'")
        url = self.public_base_url
        if url and (not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url)):
            raise ConfigError(f"public.base_url must be an absolute http(s) URL such as https://data.example.org, "
                              f"not '{url}'")
        if not 1 <= self.public_page_size <= 500:
            raise ConfigError("public.page_size must be from 1 to 500")
        if self.public_downloads_per_ip < 1 or self.public_requests_per_minute < 1:
            raise ConfigError("public.downloads_per_ip and public.requests_per_minute must be at least 1")
        if not 1 <= self.public_slow_client_s <= 3600:
            raise ConfigError("public.slow_client_s must be from 1 to 3600 seconds")
        from communs.governance.licences import LicenceError, check_expression
        from communs.node.http.public import vocab

        problem = vocab.publisher_type_problem(self.public_publisher_type) or \
            vocab.language_problem(self.public_language)
        if problem:
            raise ConfigError(problem)
        if self.public_licence:
            try:
                check_expression(self.public_licence)
            except LicenceError as exc:
                raise ConfigError(f"public.licence: {exc}") from None


def check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or any(ord(c) < 32 for c in name):
        raise ConfigError("the node name must be 1 to 100 printable characters")


def check_federation(name: str) -> None:
    if not isinstance(name, str) or not _FEDERATION_RE.match(name):
        raise ConfigError(
            f"federation '{name}' is invalid: use 1 to 63 lowercase letters, digits, '.', '_' or '-'")


def _parse_multiaddr(addr: str, what: str) -> list[tuple[str, str]]:
    if not isinstance(addr, str):
        raise ConfigError(f"{what} must be a string multiaddr")
    try:
        return components(addr)
    except BadMultiaddr as exc:
        raise ConfigError(f"{what} '{addr}' is not a valid multiaddr ({exc})") from exc


def check_listen_multiaddr(addr: str) -> None:
    parts = _parse_multiaddr(addr, "listen address")
    protos = [name for name, _ in parts]
    if len(protos) != 2 or protos[0] not in ("ip4", "ip6") or protos[1] != "tcp":
        raise ConfigError(f"listen address '{addr}' must be of the form /ip4/ADDR/tcp/PORT or /ip6/ADDR/tcp/PORT")
    port = int(parts[1][1])
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen address '{addr}' has an invalid port")


def check_peer_multiaddr(addr: str) -> None:
    protos = [name for name, _ in _parse_multiaddr(addr, "bootstrap address")]
    if "p2p" not in protos or "tcp" not in protos:
        raise ConfigError(
            f"bootstrap address '{addr}' must include a TCP port and the peer id, "
            "e.g. /ip4/192.0.2.1/tcp/7470/p2p/12D3KooW...")


def parse_host_port(text: str, what: str = "admin address") -> tuple[str, int]:
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(f"{what} '{text}' must be HOST:PORT, e.g. 127.0.0.1:7471")
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} '{text}' has an invalid port") from None
    if not 0 <= port <= 65535 or not host:
        raise ConfigError(f"{what} '{text}' must be HOST:PORT with a port from 0 to 65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SCHEMA: dict[str, dict[str, tuple[str, type | tuple[type, ...]]]] = {
    "node": {"name": ("name", str), "federation": ("federation", str), "listen": ("listen", list),
             "bootstrap": ("bootstrap", list), "mdns": ("mdns", bool), "dht": ("dht", bool)},
    "admin": {"listen": ("admin", str), "allow_remote": ("admin_allow_remote", bool),
              "max_request_bytes": ("max_request_bytes", int)},
    "log": {"level": ("log_level", str), "format": ("log_format", str)},
    "connections": {"max_inbound": ("conn_max_inbound", int), "per_ip": ("conn_per_ip", int),
                    "limit_loopback": ("conn_limit_loopback", bool),
                    "handshake_s": ("conn_handshake_s", (int, float))},
    "gossip": {"ip_colocation_threshold": ("ip_colocation_threshold", int),
               "ip_colocation_exempt": ("ip_colocation_exempt", list)},
}
_SCHEMA["publish"] = {"allowed_paths": ("publish_allowed_paths", list)}
_SCHEMA["public"] = {k: (f"public_{k}", str) for k in ("listen", "base_url", "datasets", "title", "description",
                                                        "publisher_name", "homepage", "contact", "publisher_type",
                                                        "licence", "language")}
_SCHEMA["public"].update({"page_size": ("public_page_size", int), "downloads_per_ip": ("public_downloads_per_ip", int),
                          "requests_per_minute": ("public_requests_per_minute", int),
                          "slow_client_s": ("public_slow_client_s", (int, float))})
_SCHEMA["governance"] = {"reads_per_minute": ("gov_reads_per_minute", int),
                         "submits_per_minute": ("gov_submits_per_minute", int)}
_SCHEMA["copies"] = {"claim_ttl_s": ("claim_ttl_s", int), "claims_sync_s": ("claims_sync_s", (int, float)),
                     "challenge_every_s": ("challenge_every_s", (int, float)),
                     "release_grace_s": ("release_grace_s", int)}
_SCHEMA["limits"] = {"upload_bytes_per_s": ("limit_upload_bytes_per_s", int),
                     "download_bytes_per_s": ("limit_download_bytes_per_s", int)}


def load_config(data_dir: Path) -> Config:
    path = data_dir / CONFIG_FILE
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a Communs node folder (run 'communs init --data {data_dir}' first)")
    if not path.is_file():
        raise ConfigError(f"{path} is missing: {data_dir} is not an initialised node folder")
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    cfg = Config()
    for section, value in doc.items():
        if section == "storage" and isinstance(value, dict):
            try:
                cfg.storage = parse_storage(value)
            except StorageConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            continue
        if section not in _SCHEMA or not isinstance(value, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, item in value.items():
            if key not in _SCHEMA[section]:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            attr, typ = _SCHEMA[section][key]
            if not isinstance(item, typ) or (isinstance(item, bool) and typ is not bool):
                raise ConfigError(f"{path}: {section}.{key} has the wrong type")
            if isinstance(item, list) and not all(isinstance(x, str) for x in item):
                raise ConfigError(f"{path}: {section}.{key} must be a list of strings")
            setattr(cfg, attr, item)
    try:
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def write_private(path: Path, text: str) -> None:
    """Create a secret file with mode 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path.parent)  # a key lost to a power cut after init would be a new identity


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    # a name of its own per writer: two writers at once must never rename each other's file away
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut only once its folder is synced


def fsync_dir(folder: Path) -> None:
    """Make the entries of `folder` (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
