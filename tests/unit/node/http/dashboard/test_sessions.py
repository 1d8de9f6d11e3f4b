"""The dashboard's session table and the rules for cookie-authenticated requests (pure, given `now`)."""

from __future__ import annotations

from communs.node.http.dashboard import sessions as s


def test_a_session_is_found_until_idle_or_too_old() -> None:
    t = s.SessionTable()
    a = t.open(0.0)
    assert t.find(a.id, 10.0) is a
    assert t.find(a.id, 10.0 + s.IDLE_S - 1) is a  # used: the idle clock restarts
    assert t.find(a.id, 10.0 + 2 * s.IDLE_S) is None  # idle too long
    assert a.id not in t.sessions
    b = t.open(0.0)
    now = 0.0
    while now < s.MAX_AGE_S - s.IDLE_S / 2:  # used all along, it still ends at MAX_AGE_S
        now += s.IDLE_S / 2
        assert t.find(b.id, now) is b
    assert t.find(b.id, s.MAX_AGE_S) is None


def test_ids_are_random_and_closing_ends_one_session() -> None:
    t = s.SessionTable()
    a, b = t.open(0.0), t.open(0.0)
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 40
    t.close(a.id)
    assert t.find(a.id, 1.0) is None and t.find(b.id, 1.0) is b
    assert t.find("", 1.0) is None and t.find(b.id[:-1], 1.0) is None


def test_the_table_is_bounded_and_drops_the_oldest() -> None:
    t = s.SessionTable()
    first = t.open(0.0)
    for i in range(s.MAX_SESSIONS):
        t.open(1.0 + i)
    assert len(t.sessions) == s.MAX_SESSIONS
    assert t.find(first.id, 100.0) is None


def test_cookie_requests_need_csrf_and_same_origin_when_unsafe() -> None:
    sess = s.SessionTable().open(0.0)
    assert s.cookie_refusal(None, "GET", None, True) == s.EXPIRED
    assert s.cookie_refusal(sess, "GET", None, False) is None  # reads need only the session
    assert s.cookie_refusal(sess, "POST", None, True) == s.NO_CSRF
    assert s.cookie_refusal(sess, "POST", sess.csrf[:-1], True) == s.NO_CSRF
    assert s.cookie_refusal(sess, "DELETE", "", True) == s.NO_CSRF
    assert s.cookie_refusal(sess, "POST", sess.csrf, False) == s.CROSS_ORIGIN
    assert s.cookie_refusal(sess, "post", sess.csrf, True) is None


def test_same_origin_reads_what_the_browser_says() -> None:
    assert s.same_origin("http://127.0.0.1:8080", "same-origin", "127.0.0.1:8080", "http")
    assert s.same_origin(None, None, "127.0.0.1:8080", "http")  # not a browser: CSRF token and SameSite apply
    assert not s.same_origin("http://127.0.0.1:9", None, "127.0.0.1:8080", "http")
    assert not s.same_origin("null", None, "127.0.0.1:8080", "http")
    assert not s.same_origin(None, "same-site", "127.0.0.1:8080", "http")  # another port of the same host
    assert not s.same_origin(None, "cross-site", "127.0.0.1:8080", "http")
    assert s.same_origin(None, "none", "127.0.0.1:8080", "http")  # typed in the address bar


def test_token_comparison_and_cookie_names() -> None:
    assert s.token_matches(" abc\n", "abc") and not s.token_matches("abd", "abc") and not s.token_matches("", "abc")
    assert s.cookie_name("12D3KooWAAAAAAAAAAAAbbbbbbbbbb") != s.cookie_name("12D3KooWAAAAAAAAAAAAcccccccccc")
