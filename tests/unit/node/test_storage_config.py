"""`[storage] direct_io` in config.toml (contract, "Storage backends"): absent means "probe"."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.node.config import CONFIG_FILE, Config, ConfigError, load_config


def _load(tmp_path: Path, text: str) -> Config:
    (tmp_path / CONFIG_FILE).write_text(text)
    return load_config(tmp_path)


def test_direct_io_is_probed_unless_set(tmp_path: Path) -> None:
    assert _load(tmp_path, "").storage.direct_io is None
    assert _load(tmp_path, "[storage]\ndirect_io = false\n").storage.direct_io is False
    assert _load(tmp_path, "[storage]\ndirect_io = true\n").storage.direct_io is True


def test_direct_io_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.direct_io has the wrong type"):
        _load(tmp_path, '[storage]\ndirect_io = "no"\n')


def test_direct_io_survives_a_rewrite_of_the_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "[storage]\ndirect_io = false\n")
    assert _load(tmp_path, cfg.to_toml()).storage.direct_io is False
    assert "[storage]" not in Config().to_toml()  # the default stays implicit: probed at every start
