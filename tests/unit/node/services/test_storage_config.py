"""The [storage] section of config.toml: parsed, checked, written back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from communs.node.config import Config, ConfigError, load_config
from communs.node.services.storage_config import S3Config, StorageConfig, StorageConfigError, parse_storage, s3_settings
from communs.storage.errors import StorageError

S3 = {"endpoint": "http://127.0.0.1:8333", "bucket": "communs"}


def test_the_default_is_the_folder_store_and_is_not_written() -> None:
    assert parse_storage({}) == StorageConfig()
    assert "[storage]" not in Config().to_toml()


def test_an_s3_section_round_trips_through_config_toml(tmp_path: Path) -> None:
    cfg = Config()
    cfg.storage = parse_storage({"backend": "s3", "s3": {**S3, "prefix": "n1/", "capacity_bytes": 10**12}})
    (tmp_path / "config.toml").write_text(cfg.to_toml())
    doc = tomllib.loads((tmp_path / "config.toml").read_text())
    assert doc["storage"]["backend"] == "s3" and doc["storage"]["s3"]["bucket"] == "communs"
    loaded = load_config(tmp_path).storage
    assert loaded.backend == "s3" and loaded.s3 is not None
    assert (loaded.s3.prefix, loaded.s3.capacity_bytes, loaded.s3.region) == ("n1/", 10**12, "us-east-1")


@pytest.mark.parametrize(("section", "message"), [
    ({"backend": "nfs"}, "storage.backend must be 'fs' or 's3', not 'nfs'"),
    ({"backend": "s3"}, "there is no [storage.s3] section"),
    ({"colour": 1}, "unknown key storage.colour"),
    ({"direct_io": "yes"}, "storage.direct_io has the wrong type"),
    ({"backend": "s3", "s3": {**S3, "secret": "x"}}, "unknown key storage.s3.secret"),
    ({"backend": "s3", "s3": {**S3, "endpoint": "127.0.0.1:8333"}}, "must be an http:// or https:// URL"),
    ({"backend": "s3", "s3": {**S3, "bucket": "No_Such"}}, "is not a valid bucket name"),
    ({"backend": "s3", "s3": {**S3, "capacity_bytes": 0}}, "capacity_bytes must be positive"),
    ({"backend": "s3", "s3": {**S3, "concurrency": True}}, "storage.s3.concurrency has the wrong type"),
])
def test_bad_values_are_one_sentence_naming_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(StorageConfigError) as err:
        parse_storage(section)
    assert message in str(err.value)


def test_a_bad_value_in_config_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(Config().to_toml() + '\n[storage]\nbackend = "tape"\n')
    with pytest.raises(ConfigError, match=r"config.toml: storage.backend must be 'fs' or 's3'"):
        load_config(tmp_path)


def test_credentials_come_from_the_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(StorageError, match="needs credentials: set AWS_ACCESS_KEY_ID"):
        s3_settings(tmp_path, S3Config(**S3))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert s3_settings(tmp_path, S3Config(**S3)).access_key == "env-key"
    creds = tmp_path / "creds"
    creds.write_text("[default]\naws_access_key_id = file-key\naws_secret_access_key = file-secret\n")
    creds.chmod(0o600)
    got = s3_settings(tmp_path, S3Config(**S3, credentials_file="creds"))
    assert (got.access_key, got.secret_key) == ("file-key", "file-secret")
