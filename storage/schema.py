"""The catalog's SQLite schema, as an ordered list of migrations.

Migration N (1-based) takes a catalog from `PRAGMA user_version` N-1 to N. They run at open, all pending
ones in one transaction, so a crash mid-upgrade leaves the old schema intact. Never edit a released
migration: append a new one.

Design choices:
- A chunk's use by manifests is a plain relation (`manifest_chunks`), not a reference count: "which chunks
  does no kept dataset use" is one query, and there is no counter to get wrong across a crash.
- `replication` keeps no byte counter either: bytes done are the sizes of the manifest's chunks marked
  stored, so progress survives a crash without extra writes.
- The governance log refuses UPDATE and DELETE in the database itself (triggers), not only in code.
"""

from __future__ import annotations

# 'Cmns': marks the file as a Communs catalog, so that another application's database is refused.
APPLICATION_ID = 0x436D6E73

MIGRATIONS: list[list[str]] = [
    # 1: the first schema.
    [
        """
        CREATE TABLE manifests (
            id          BLOB PRIMARY KEY,
            dataset     BLOB NOT NULL,
            version     INTEGER NOT NULL,
            publisher   BLOB NOT NULL,
            seq         INTEGER NOT NULL CHECK (seq >= 1),
            log_prev    BLOB,
            raw         BLOB NOT NULL,
            title       TEXT NOT NULL,
            licence     TEXT NOT NULL,
            size        INTEGER NOT NULL CHECK (size >= 0),
            created     INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            own         INTEGER NOT NULL DEFAULT 0 CHECK (own IN (0, 1)),
            state       TEXT NOT NULL,
            reason      TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE UNIQUE INDEX manifests_publisher_seq ON manifests (publisher, seq)",
        "CREATE INDEX manifests_dataset ON manifests (dataset, version)",
        "CREATE INDEX manifests_state ON manifests (state)",
        """
        CREATE TABLE chunks (
            digest BLOB PRIMARY KEY,
            size   INTEGER NOT NULL CHECK (size >= 0),
            stored INTEGER NOT NULL DEFAULT 0 CHECK (stored IN (0, 1))
        ) WITHOUT ROWID
        """,
        "CREATE INDEX chunks_stored ON chunks (stored)",
        """
        CREATE TABLE manifest_chunks (
            manifest BLOB NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
            digest   BLOB NOT NULL REFERENCES chunks (digest),
            PRIMARY KEY (manifest, digest)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX manifest_chunks_digest ON manifest_chunks (digest)",
        """
        CREATE TABLE forks (
            publisher   BLOB NOT NULL,
            seq         INTEGER NOT NULL,
            id_a        BLOB NOT NULL,
            raw_a       BLOB NOT NULL,
            id_b        BLOB NOT NULL,
            raw_b       BLOB NOT NULL,
            reason      TEXT NOT NULL DEFAULT '',
            detected_at INTEGER NOT NULL,
            PRIMARY KEY (publisher, id_a, id_b),
            CHECK (id_a < id_b)
        )
        """,
        """
        CREATE TABLE gov_log (
            seq  INTEGER PRIMARY KEY CHECK (seq >= 0),
            hash BLOB NOT NULL UNIQUE,
            prev BLOB,
            kind TEXT NOT NULL,
            raw  BLOB NOT NULL,
            at   INTEGER NOT NULL
        )
        """,
        """
        CREATE TRIGGER gov_log_no_update BEFORE UPDATE ON gov_log
        BEGIN SELECT RAISE(ABORT, 'the governance log is append-only: entries cannot be changed'); END
        """,
        """
        CREATE TRIGGER gov_log_no_delete BEFORE DELETE ON gov_log
        BEGIN SELECT RAISE(ABORT, 'the governance log is append-only: entries cannot be deleted'); END
        """,
        """
        CREATE TABLE replication (
            manifest    BLOB PRIMARY KEY REFERENCES manifests (id) ON DELETE CASCADE,
            bytes_total INTEGER NOT NULL,
            started_at  INTEGER NOT NULL,
            updated_at  INTEGER NOT NULL,
            last_error  TEXT NOT NULL DEFAULT ''
        )
        """,
        """
        CREATE TABLE sources (
            manifest   BLOB NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
            peer       TEXT NOT NULL,
            last_seen  INTEGER NOT NULL,
            failures   INTEGER NOT NULL DEFAULT 0,
            banned     INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1)),
            ban_reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (manifest, peer)
        )
        """,
        """
        CREATE TABLE kv (
            key   TEXT PRIMARY KEY,
            value BLOB NOT NULL
        )
        """,
    ],
    # 2: a manifest's chunk list in one column. Chunk rows (`chunks`, `manifest_chunks`) are now written
    # only while a manifest is in a kept state, from this list, so that the many datasets a node learns
    # of but does not keep cost one row each (catalog.py says why). Manifests stored before this keep the
    # chunk rows they have, and a NULL list.
    [
        "ALTER TABLE manifests ADD COLUMN chunk_refs BLOB",
    ],
    # 3: signed holding claims (protocol/holding.py): the newest claim or withdrawal of each node for each
    # manifest, and when its holder last passed (or failed) a proof-of-holding challenge asked from here;
    # `stamp` orders rows by when they were stored here, the cursor of /communs/claims/1. Not tied to
    # `manifests`: a claim may arrive before the manifest it names.
    [
        """
        CREATE TABLE holding_claims (
            node        BLOB NOT NULL,
            manifest    BLOB NOT NULL,
            issued      INTEGER NOT NULL,
            since       INTEGER NOT NULL,
            expires     INTEGER NOT NULL,
            withdrawn   INTEGER NOT NULL CHECK (withdrawn IN (0, 1)),
            raw         BLOB NOT NULL,
            verified_at INTEGER,
            failed_at   INTEGER,
            stamp       INTEGER NOT NULL,
            PRIMARY KEY (node, manifest)
        ) WITHOUT ROWID
        """,
        "CREATE UNIQUE INDEX holding_claims_stamp ON holding_claims (stamp)",
        "CREATE INDEX holding_claims_manifest ON holding_claims (manifest, expires)",
        "CREATE INDEX holding_claims_expires ON holding_claims (expires)",
    ],
    # 4: the whole-file SHA-256 of a file, for the public export's `spdx:checksum` (manifests hold chunk
    # hashes only). Keyed by the file's chunk list (`file_key`, BLAKE3 of its digests and sizes, which fix
    # its bytes), so a file unchanged across versions is hashed once; written only after every chunk was
    # read back and verified against its hash. Not tied to `manifests`: a row is 80 bytes, and a file
    # dropped here and fetched again need not be hashed again.
    [
        """
        CREATE TABLE file_sha256 (
            file_key    BLOB PRIMARY KEY CHECK (length(file_key) = 32),
            sha256      BLOB NOT NULL CHECK (length(sha256) = 32),
            size        INTEGER NOT NULL CHECK (size >= 0),
            computed_at INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
    ],
    # 5: what the node must not forget across a restart, though it is not signed anywhere.
    # `gov_routes`: by which route each accepted governance record came here (admin API, or libp2p and the
    # peer), the operator's view of `communs proposals`; not part of the signed log (a route is what this
    # node saw, not what anyone signed), so it lives beside it, keyed by the record's id.
    # `release_grace`: for each replica that N verified keepers hold, how long this node has seen that
    # (`observed_s`) and when it last did (`last_seen`), so that a restart neither restarts nor skips the
    # grace period before the replica is released (governance/copies.py `advance_grace`).
    [
        """
        CREATE TABLE gov_routes (
            record BLOB PRIMARY KEY,
            route  TEXT NOT NULL,
            peer   TEXT,
            at     INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE release_grace (
            manifest   BLOB PRIMARY KEY,
            observed_s INTEGER NOT NULL CHECK (observed_s >= 0),
            last_seen  INTEGER NOT NULL
        ) WITHOUT ROWID
        """,
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
