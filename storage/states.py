"""The states a manifest can be in on this node (the `state` of every dataset in the API and the CLI)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """What this node does with one manifest; the catalog stores the value."""

    OWN = "own"  # published here
    COMPLETE = "complete"  # every chunk stored and verified here
    IN_PROGRESS = "in-progress"  # wanted; being fetched
    NOT_WANTED = "not-wanted"  # the policy in force does not want it
    RETRACTED = "retracted"  # withdrawn by its publisher: released, unless the policy says keep_retracted


HELD = frozenset({State.OWN, State.COMPLETE})
"""States whose chunks are all here: what may be served, got and claimed."""
