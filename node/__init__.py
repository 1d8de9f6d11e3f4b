"""Communs node: the asyncio shell (config, lifecycle, admin HTTP, CLI, replication)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("communs")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
