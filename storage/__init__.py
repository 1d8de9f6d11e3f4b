"""Communs storage: the SQLite catalog and the content-addressed chunk store."""
