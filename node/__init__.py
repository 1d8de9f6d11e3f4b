"""Communs node: the asyncio shell (config, lifecycle, admin HTTP, CLI, replication)."""
