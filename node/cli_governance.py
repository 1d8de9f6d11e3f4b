"""CLI commands for governance: propose, vote, proposals, policy, audit."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    return None
