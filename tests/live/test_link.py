"""Ableton Link: livekomp and a second Link peer (LinkPython-extern) in a network namespace of
their own, so nothing reaches the real network. See tools/link_scenario.py."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from tools.link_scenario import netns_command
from tools.peers import REPO

pytestmark = [pytest.mark.jack, pytest.mark.link]


@pytest.fixture
def link_netns(netns):
    pytest.importorskip("link", reason="LinkPython-extern is not installed")


def test_livekomp_follows_a_link_peer_and_proposes_to_the_session(
    link_netns, jack_server, tmp_path
):
    out = tmp_path / "link.json"
    script = str(REPO / "tools" / "link_scenario.py")
    subprocess.run(netns_command([sys.executable, script, str(out), "4"]), timeout=120)
    result = json.loads(out.read_text())
    log = result["serve_log"]
    assert result["ok"], log
    assert result["peers"] == 1
    # The session's tempo and start/stop, as livekomp's feedback reports them.
    assert result["tempo_100"] and result["tempo_130"], log
    assert result["started"] and result["stopped"], log
    assert result["late_notes_after_stop"] == 0
    # What livekomp proposes, the session (the other peer) takes.
    assert result["peer_tempo_after_proposal"] == pytest.approx(90.0, abs=0.01)
    assert result["peer_playing_after_proposal"] is True
    # Phase: livekomp's notes on the other peer's grid. The first one on a bar line of the
    # session (quantum 4), all of them near a sixteenth; the JACK transport adds a period or
    # so (2.7 ms here), and the beat after the tempo change is left aside.
    notes = result["notes"]
    assert len(notes) > 30
    first = notes[0]["beat"]
    assert abs(first - round(first / 4) * 4) < 0.02
    steady = [n["error_ms"] for n in notes if not 0 <= n["after_change_s"] < 1.0]
    assert abs(statistics.median(steady)) < 6.0
    assert max(abs(e) for e in steady) < 15.0
