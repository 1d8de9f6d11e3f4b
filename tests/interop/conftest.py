from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.jspeer import install


@pytest.fixture(scope="session")
def js_peer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(tmp_path_factory.mktemp("interop"))
