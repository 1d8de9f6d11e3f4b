"""`[public]` in config.toml: read, checked at load with one sentence naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.node.config import ConfigError, load_config


def write(tmp_path: Path, public: str) -> Path:
    (tmp_path / "config.toml").write_text('[node]\nname = "n"\n[public]\n' + public)
    return tmp_path


def test_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'listen = "0.0.0.0:8080"\nbase_url = "https://data.example.org"\n'
                                      'datasets = "held"\npage_size = 10\nslow_client_s = 5\n'))
    assert cfg.public_listen == "0.0.0.0:8080" and cfg.public_datasets == "held" and cfg.public_page_size == 10
    assert "[public]" in cfg.to_toml()


def test_off_by_default(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[node]\nname = "n"\n')
    cfg = load_config(tmp_path)
    assert cfg.public_listen == "" and "[public]" not in cfg.to_toml()


@pytest.mark.parametrize("public,words", [
    ('listen = "nowhere"\n', "public.listen"),
    ('listen = "127.0.0.1:1"\ndatasets = "all"\n', "public.datasets"),
    ('listen = "127.0.0.1:1"\nbase_url = "data.example.org"\n', "public.base_url"),
    ('listen = "127.0.0.1:1"\npage_size = 100000\n', "public.page_size"),
    ('listen = "127.0.0.1:1"\nslow_client_s = 0\n', "public.slow_client_s"),
    ('listen = "127.0.0.1:1"\nunknown = 1\n', "public.unknown"),
    ('listen = 8080\n', "public.listen"),
    ('listen = "127.0.0.1:1"\npublisher_type = "Cooperative"\n', "public.publisher_type"),
    ('listen = "127.0.0.1:1"\nlanguage = "fr"\n', "public.language"),
    ('listen = "127.0.0.1:1"\nlicence = "CC-BY-4.0 OR"\n', "public.licence"),
])
def test_bad_values_named(tmp_path: Path, public: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(write(tmp_path, public))


def test_catalog_vocabulary_keys_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'listen = "0.0.0.0:8080"\npublisher_type = "NonProfitOrganisation"\n'
                                      'licence = "CC0-1.0"\nlanguage = "FRA"\n'))
    assert (cfg.public_publisher_type, cfg.public_licence, cfg.public_language) == \
        ("NonProfitOrganisation", "CC0-1.0", "FRA")
    (tmp_path / "config.toml").write_text(cfg.to_toml())
    again = load_config(tmp_path)
    assert (again.public_publisher_type, again.public_licence, again.public_language) == \
        ("NonProfitOrganisation", "CC0-1.0", "FRA")
