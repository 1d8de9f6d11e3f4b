"""The dashboard's last-hour series and its warnings (pure)."""

from __future__ import annotations

from communs.node.http.dashboard import history as h


def test_points_every_step_for_one_hour() -> None:
    hist = h.History()
    assert hist.add(1000.0, 10, 0)
    assert not hist.add(1000.0 + h.STEP_S / 2, 20, 50)  # too soon
    assert hist.add(1000.0 + h.STEP_S, 30, 100)
    series = hist.series()
    assert series["stored"] == [[1000.0, 10.0], [1000.0 + h.STEP_S, 30.0]]
    assert series["throughput"] == [[1000.0 + h.STEP_S, 100 / h.STEP_S]]
    t = 1000.0 + h.STEP_S
    while t < 1000.0 + 2 * h.WINDOW_S:
        t += h.STEP_S
        hist.add(t, 1, 100)
    assert t - hist.points[0][0] <= h.WINDOW_S
    assert len(hist.points) <= h.WINDOW_S / h.STEP_S + 1


def test_a_counter_that_restarts_is_no_negative_throughput() -> None:
    hist = h.History()
    hist.add(0.0, 0, 500)
    hist.add(h.STEP_S, 0, 0)
    assert hist.series()["throughput"] == [[h.STEP_S, 0.0]]


def test_warnings_in_words() -> None:
    assert h.warnings({}) == []
    quiet = {"status": {"listen_addrs": ["/ip4/127.0.0.1/tcp/1"]}, "peers": [{"peer_id": "x"}],
             "disk": {"used": 10, "quota": 100}, "datasets": {"own": 1}}
    assert h.warnings(quiet) == []
    loud = {
        "status": {"catalog_damaged": "run communs repair", "inbound": {"problem": "too many connections"},
                   "storage": {"waiting": "S3 does not answer"}, "listen_addrs": ["/ip4/127.0.0.1/tcp/1"]},
        "peers": [],
        "disk": {"used": 95, "quota": 100},
        "datasets": {"damaged": 2, "endangered": 1},
        "replication": {"waiting": [{"title": "Survey", "reason": "the disk is full"}]},
    }
    w = h.warnings(loud)
    assert w[0].startswith("The catalog is damaged: run communs repair")
    for text in ("too many connections", "S3 does not answer", "95 %", "2 datasets damaged",
                 "1 dataset held by too few", "“Survey” waits: the disk is full", "No peer is connected"):
        assert any(text in x for x in w), (text, w)


def test_fields_other_services_add_later_are_read_when_present() -> None:
    w = h.warnings({"node_status": {"bootstrap": [{"addr": "/ip4/10.0.0.1/tcp/4001/p2p/x", "error": "refused"},
                                                  {"addr": "/ip4/10.0.0.2/tcp/4001/p2p/y"}]}})
    assert w == ["Bootstrap peer /ip4/10.0.0.1/tcp/4001/p2p/x fails: refused"]
    assert h.warnings({"node_status": {"bootstrap": "not a list"}}) == []
