"""What every command shares: the error type, printing for people or scripts, the data folder, the client."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from communs.node.cli.client import AdminClient

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise CliError(message, code)


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print `data` as JSON with --json, else as text for a person."""
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if text is None:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif callable(text):
        print(text(data))
    else:
        print(text)


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data).expanduser()


def client(args: argparse.Namespace, timeout: float = 30.0) -> AdminClient:
    from communs.node.cli.client import AdminClient

    return AdminClient.for_folder(data_dir(args), timeout=timeout)
