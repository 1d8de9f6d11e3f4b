"""Errors the node's shell raises to its caller (the CLI), each carrying one sentence for the operator."""

from __future__ import annotations


class StartupError(Exception):
    """The node could not start; the message is one sentence for the operator."""
