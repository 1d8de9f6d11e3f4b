"""Prometheus metrics, one registry per node (tests run several nodes; a global one would mix them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.peers = Gauge("communs_peers", "Connected libp2p peers", registry=r)
        self.messages = Counter("communs_gossip_messages_total", "Gossip messages by outcome",
                                ["outcome", "reason"], registry=r)
        self.stream_requests = Counter("communs_stream_requests_total", "Stream requests served",
                                       ["protocol", "outcome"], registry=r)
        self.bytes_in = Counter("communs_bytes_fetched_total", "Chunk bytes fetched from peers", registry=r)
        self.bytes_out = Counter("communs_bytes_served_total", "Chunk bytes served to peers", registry=r)
        self.chunks_rejected = Counter("communs_chunks_rejected_total",
                                       "Chunks received that did not match their hash", registry=r)
        self.datasets = Gauge("communs_datasets", "Known dataset versions by state", ["state"], registry=r)
        self.datasets_complete = Counter("communs_datasets_completed_total",
                                         "Dataset versions replicated to completion", registry=r)
        self.replication_queue = Gauge("communs_replication_queue", "Dataset versions waiting or in progress",
                                       registry=r)
        self.governance = Counter("communs_governance_events_total", "Governance events by kind",
                                  ["kind"], registry=r)
        self.governance_submissions = Counter(
            "communs_governance_submissions_total", "Signed proposals and ballots submitted, by route and outcome",
            ["route", "outcome"], registry=r)
        self.api_requests = Counter("communs_api_requests_total", "Admin API requests by status class",
                                    ["status"], registry=r)
        # Holding claims on the wire (node/services/copies.py), payload bytes: channel "gossip" (direction "in":
        # messages from others that reached the topic validator, each once; "out": messages this node
        # published), "sync_client" (this node asking: requests out, answers in) and "sync_server" (this node
        # answering: requests in, answers out). Not counted: libp2p's envelopes, framing and encryption, and
        # gossipsub's relaying (a message goes to up to D mesh peers; copies seen before are dropped unread).
        self.claims_bytes = Counter("communs_claims_bytes_total", "Holding claims bytes by direction and channel",
                                    ["direction", "channel"], registry=r)
        for direction in ("in", "out"):
            for channel in ("gossip", "sync_client", "sync_server"):
                self.claims_bytes.labels(direction, channel)
        self.sync_records = Counter("communs_sync_records_total", "Manifests learned by catalog sync",
                                    registry=r)
        # what="store": bytes of the chunks stored; "free": bytes free where they are stored; "quota": the
        # policy's storage quota (a label present only when the value is known or set)
        self.disk = Gauge("communs_disk_bytes", "Chunk store bytes, free bytes and storage quota", ["what"],
                          registry=r)

    def watch_limits(self, read: Callable[[], dict[str, int]]) -> None:
        """Export what the overlay's per-peer limits refused (`communs_peer_limits_total{what, reason}`); the
        counts live in libp2p's thread and are read at scrape time."""
        if getattr(self, "_limits", None) is None:
            self._limits = _LimitCounts(read)
            self.registry.register(self._limits)
        self._limits.read = read

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LimitCounts(Collector):
    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("communs_peer_limits", "Streams and gossip refused by per-peer limits",
                                     labels=["what", "reason"])
        for key, count in sorted(self.read().items()):
            what, _, reason = key.partition(":")
            family.add_metric([what, reason], count)
        yield family
