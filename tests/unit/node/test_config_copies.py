"""`[copies]` in config.toml: claim lifetime, sync and challenge intervals, release grace; bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.node.config import Config, ConfigError, load_config


def folder(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "config.toml").write_text(Config().to_toml() + extra, "utf-8")
    return tmp_path


def test_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(folder(tmp_path, ""))
    assert (cfg.claim_ttl_s, cfg.claims_sync_s, cfg.challenge_every_s, cfg.release_grace_s) == (86400, 300, 600, 3600)
    cfg = load_config(folder(tmp_path, "\n[copies]\nclaim_ttl_s = 8\nclaims_sync_s = 1\nchallenge_every_s = 0.3\n"
                                       "release_grace_s = 0\n"))
    assert (cfg.claim_ttl_s, cfg.claims_sync_s, cfg.challenge_every_s, cfg.release_grace_s) == (8, 1, 0.3, 0)


@pytest.mark.parametrize(("line", "message"), [
    ("claim_ttl_s = 4", "copies.claim_ttl_s must be between 5 and 172800 seconds"),
    ("claim_ttl_s = 999999", "copies.claim_ttl_s must be between 5 and 172800 seconds"),
    ("claim_ttl_s = 8.5", "copies.claim_ttl_s has the wrong type"),
    ("challenge_every_s = 0", "copies.challenge_every_s must be between 0.1 and 86400 seconds"),
    ("release_grace_s = -1", "copies.release_grace_s must be between 0 and 2592000 seconds"),
    ("min_copies = 3", "unknown key copies.min_copies"),
])
def test_bad_values_are_refused_in_one_sentence(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(folder(tmp_path, f"\n[copies]\n{line}\n"))
