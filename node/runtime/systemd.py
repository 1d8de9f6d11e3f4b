"""systemd's readiness protocol (sd_notify), with the standard library only.

Under `Type=notify`, systemd passes a unix datagram socket in `NOTIFY_SOCKET` and counts the
service as started only when it receives `READY=1`: `systemctl start` then returns once the node
answers, and units ordered after it start when it can serve them. `STOPPING=1` tells systemd the
stop it sees is deliberate. Outside systemd the variable is absent and nothing is sent.
"""

from __future__ import annotations

import os
import socket

SEND_TIMEOUT_S = 1.0


def notify(state: str) -> bool:
    """Send `state` (e.g. `READY=1`) to systemd; False when not run by systemd or when sending failed
    (readiness is a courtesy to the supervisor, never a reason for the node to fail)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):  # Linux abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a transport this code does not speak (e.g. vsock:)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


__all__ = ["notify"]
