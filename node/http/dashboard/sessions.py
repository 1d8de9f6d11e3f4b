"""Dashboard sign-in sessions: a table in memory and the rules a cookie-carrying request must meet.

Pure and deterministic (every decision takes `now`): the aiohttp shell in `routes.py` and the admin
app's auth middleware call these. The table lives in memory only, so a restart signs everybody out:
that is intended (nothing about a session is ever written to disk, next to the admin token).

Why a cookie at all: the admin token typed once into a form is exchanged for a random session id in an
HttpOnly, SameSite=Strict cookie, so the page's scripts never see the token nor keep it in storage, and
a stolen session id dies with its session. Since the browser sends the cookie on its own, every unsafe
request made with it must also carry the session's CSRF token in a header (which another page cannot
read nor set), and must not come from another origin.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

IDLE_S = 2 * 3600.0  # a session nobody used for this long ends
MAX_AGE_S = 12 * 3600.0  # and every session ends this long after sign-in, used or not
MAX_SESSIONS = 64  # beyond this, signing in ends the oldest session
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

EXPIRED = "your dashboard session has ended (signed out, expired, or the node restarted); sign in again"
NO_CSRF = "this request carries the session cookie but not its CSRF token; refused as a possible forgery"
CROSS_ORIGIN = "this request comes from another web origin; refused as a possible forgery"


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last_used: float


@dataclass
class SessionTable:
    """Open sessions by id (random 256-bit ids; compared by dict lookup of the whole id)."""

    sessions: dict[str, Session] = field(default_factory=dict)

    def open(self, now: float) -> Session:
        self.expire(now)
        while len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions.values(), key=lambda s: s.created)
            del self.sessions[oldest.id]
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self.sessions[s.id] = s
        return s

    def find(self, session_id: str, now: float) -> Session | None:
        """The live session with this id, marked as used now; None if there is none or it has expired."""
        s = self.sessions.get(session_id)
        if s is None:
            return None
        if not alive(s, now):
            del self.sessions[s.id]
            return None
        s.last_used = now
        return s

    def close(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def expire(self, now: float) -> None:
        for sid in [sid for sid, s in self.sessions.items() if not alive(s, now)]:
            del self.sessions[sid]


def alive(s: Session, now: float) -> bool:
    return now - s.last_used < IDLE_S and now - s.created < MAX_AGE_S


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of the typed admin token with the node's."""
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def same_origin(origin: str | None, sec_fetch_site: str | None, host: str | None, scheme: str) -> bool:
    """Whether the browser says the request comes from this very origin (or says nothing: not a browser,
    or one too old to send these headers, which SameSite=Strict and the CSRF token still cover)."""
    if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
        return False
    if origin is not None and origin != f"{scheme}://{host}":
        return False
    return True


def cookie_refusal(session: Session | None, method: str, csrf_header: str | None, origin_ok: bool) -> str | None:
    """Why a request authenticated only by the session cookie is refused, or None if it may pass.

    Safe methods need a live session; unsafe ones also the session's CSRF token and a same-origin request.
    """
    if session is None:
        return EXPIRED
    if method.upper() in SAFE_METHODS:
        return None
    if not origin_ok:
        return CROSS_ORIGIN
    if csrf_header is None or not hmac.compare_digest(csrf_header.encode(), session.csrf.encode()):
        return NO_CSRF
    return None


def cookie_name(peer_id: str) -> str:
    """Cookies ignore ports: two nodes on one host would overwrite each other's cookie under one name."""
    return "communs_session_" + peer_id[-10:]
