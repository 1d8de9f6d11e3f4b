"""One log format for the node and for py-libp2p.

py-libp2p sets its `libp2p` logger to not propagate and leaves it without handlers, so its
warnings reach stderr through Python's last-resort handler in another format, and a stray
`logging.basicConfig()` in a dependency can add a second root handler that prints every line
twice. We own the root logger instead: one handler, our format, `libp2p` propagating into it
at a level one step quieter than the node's (its INFO is chatty and mostly internal).
"""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_NOISY = ("libp2p", "multiaddr", "zeroconf", "aiohttp.access", "async_service", "aiosqlite")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _QuietDependencies(logging.Filter):
    """Below `threshold`, let through only the node's own records (py-libp2p sets levels on its
    module loggers itself, so a level on the `libp2p` parent alone does not hold)."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.threshold or record.name.startswith("communs")


class _DialFailuresToDebug(logging.Filter):
    """py-libp2p logs every failed TCP dial at ERROR ("Failed to open TCP stream"), once per address
    and attempt, and then raises; the node handles the error and says once per peer that it keeps
    trying (service.py). Likewise a stream refused because the peer does not speak the protocol (the
    DHT asking a node run with --no-dht), in eight lines. Those records are demoted to DEBUG here,
    where the level filter drops them."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith(("Failed to open TCP stream", "Unexpected error opening TCP stream")) or (
                msg.startswith("Failed to open stream to peer") and "protocol not supported" in msg):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_DIAL_FILTER = _DialFailuresToDebug()


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    numeric = _LEVELS.get(level, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if numeric > logging.DEBUG:
        handler.addFilter(_QuietDependencies(logging.WARNING))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    quieter = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    for name in _NOISY:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(quieter if name != "aiohttp.access" else logging.WARNING)
    # libp2p logs routine dial failures to absent peers at WARNING; they are retried by us.
    if numeric > logging.DEBUG:
        for name in ("libp2p.network.swarm", "libp2p.transport.tcp", "libp2p.transport.tcp.tcp",
                     "libp2p.pubsub.pubsub", "libp2p.host.basic_host", "libp2p.kad_dht"):
            logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("libp2p.transport.tcp", "libp2p.transport.tcp.tcp", "libp2p.host.basic_host"):
        lg = logging.getLogger(name)
        if _DIAL_FILTER not in lg.filters:
            lg.addFilter(_DIAL_FILTER)
