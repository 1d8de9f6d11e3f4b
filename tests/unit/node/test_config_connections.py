"""`[connections]` in config.toml: read, checked, refused with one sentence naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.node.config import Config, ConfigError, load_config


def folder(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "config.toml").write_text(Config().to_toml() + extra, "utf-8")
    return tmp_path


def test_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(folder(tmp_path, ""))
    assert (cfg.conn_max_inbound, cfg.conn_per_ip, cfg.conn_limit_loopback, cfg.conn_handshake_s) == \
        (300, 8, False, 10.0)
    cfg = load_config(folder(tmp_path, "\n[connections]\nper_ip = 2\nlimit_loopback = true\nhandshake_s = 5\n"))
    assert (cfg.conn_per_ip, cfg.conn_limit_loopback, cfg.conn_handshake_s) == (2, True, 5)


@pytest.mark.parametrize(("line", "message"), [
    ("per_ip = 0", "connections.max_inbound and connections.per_ip must be at least 1"),
    ("max_inbound = -1", "connections.max_inbound and connections.per_ip must be at least 1"),
    ("handshake_s = 0", "connections.handshake_s must be more than 0 and at most 600 seconds"),
    ("handshake_s = true", "connections.handshake_s has the wrong type"),
    ("per_ip = 2.5", "connections.per_ip has the wrong type"),
    ("per_address = 3", "unknown key connections.per_address"),
])
def test_bad_values_are_refused(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(folder(tmp_path, f"\n[connections]\n{line}\n"))


def test_governance_budgets_are_read_and_checked(tmp_path: Path) -> None:
    """[governance] reads_per_minute / submits_per_minute (protocol/README.md 5.6)."""
    (tmp_path / "config.toml").write_text('[governance]\nsubmits_per_minute = 500\n')
    cfg = load_config(tmp_path)
    assert (cfg.gov_submits_per_minute, cfg.gov_reads_per_minute) == (500, 120)
    (tmp_path / "config.toml").write_text('[governance]\nreads_per_minute = 0\n')
    with pytest.raises(ConfigError, match="at least 1"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text('[governance]\nwrites = 1\n')
    with pytest.raises(ConfigError, match=r"unknown key governance\.writes"):
        load_config(tmp_path)


def test_rewriting_the_config_keeps_every_section_the_operator_set(tmp_path: Path) -> None:
    """`communs storage migrate` rewrites config.toml from a Config: no section may be lost on the way."""
    text = """
[node]
name = "coop"
[connections]
per_ip = 3
[gossip]
ip_colocation_threshold = 4
[publish]
allowed_paths = ["/srv/import"]
[public]
listen = "127.0.0.1:8080"
title = "Coop data"
page_size = 20
[governance]
submits_per_minute = 5
[copies]
claim_ttl_s = 3600
[limits]
upload_bytes_per_s = 1000000
"""
    (tmp_path / "config.toml").write_text(text)
    cfg = load_config(tmp_path)
    (tmp_path / "config.toml").write_text(cfg.to_toml())
    again = load_config(tmp_path)
    assert again == cfg
    assert (again.conn_per_ip, again.ip_colocation_threshold, again.publish_allowed_paths, again.public_title,
            again.public_page_size, again.gov_submits_per_minute, again.claim_ttl_s,
            again.limit_upload_bytes_per_s) == (3, 4, ["/srv/import"], "Coop data", 20, 5, 3600, 1_000_000)
