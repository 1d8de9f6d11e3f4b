"""Every option and argument of every `communs` command says what it is for (issue 18)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from communs.node.cli.main import build_parser


def _walk(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield name, action


def test_every_option_of_every_command_has_help_text() -> None:
    missing = [f"{cmd}: {'/'.join(a.option_strings) or a.dest}" for cmd, a in _walk(build_parser(), "communs")
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_every_command_has_help_text() -> None:
    def commands(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, str | None]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for sub_name, sub in action.choices.items():
                    yield f"{name} {sub_name}", helps.get(sub_name)
                    yield from commands(sub, f"{name} {sub_name}")

    assert [c for c, h in commands(build_parser(), "communs") if not h] == []


def test_json_errors_are_json_and_text_errors_one_sentence(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest
    from communs.node.cli.main import main

    with pytest.raises(SystemExit) as exit_json:
        main(["status", "--json", "--data", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert exit_json.value.code != 0 and "not a Communs node folder" in json.loads(err)["error"]
    with pytest.raises(SystemExit):
        main(["status", "--data", str(tmp_path / "none")])
    assert capsys.readouterr().err.startswith("communs: error: ")


def test_readme_says_how_to_put_communs_on_path() -> None:
    """The launcher scripts/run installs is .venv/bin/communs (a console script); README says how to reach it."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["communs"]
    readme = (root / "README.md").read_text()
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in readme and ".venv/bin/communs" in readme
    assert "~/.local/bin/communs" in (root / "scripts" / "run").read_text()
