"""A flood of OSC from two sources in a network namespace of its own: one allowed, one not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.link_scenario import netns_command

COUNT = 20_000  # per source: 100x the allowed source's rate of 200/s over the 2 s flood


def test_a_flood_from_a_denied_and_an_allowed_source(netns, jack_server, tmp_path):
    out = tmp_path / "flood.json"
    command = [sys.executable, "-m", "tools.flood", str(out), "--count", str(COUNT)]
    command += ["--rate-hz", "10000", "--osc-rate", "200", "--osc-burst", "50"]
    subprocess.run(netns_command(command), timeout=120, check=True)
    result = json.loads(out.read_text())
    summary = result["summary"]
    osc = summary["inputs"]["osc"]
    assert result["exit_code"] == 0
    [allow_line] = result["allow_lines"]  # said once, at start
    assert "10.77.0.0/24, 127.0.0.0/8, ::1/128" in allow_line and "200 datagrams/s" in allow_line
    # Every datagram is accounted for: parsed, refused by the guard, or lost in the kernel.
    sent = 2 * COUNT + result["slow_controls"]
    assert osc["received"] + osc["denied"] + osc["rate_limited"] + result["kernel_dropped"] == sent
    assert osc["denied"] >= COUNT - result["kernel_dropped"]
    assert osc["rate_limited"] > COUNT // 2  # the allowed source went far past its limit
    assert osc["dispatched"] == 2 * osc["received"]  # an XY message is two controls
    # The denied source sent valence -1 all along; the allowed one +0.8, then +1 slowly.
    valences = [bar["mood"]["valence"] for bar in summary["bars"]]
    assert min(valences) >= 0.0, valences
    assert valences[-1] == pytest.approx(1.0), valences
    # The music went on through it: every bar played in order, every message sent.
    assert [bar["bar"] for bar in summary["bars"]] == list(range(len(summary["bars"])))
    assert len(summary["bars"]) >= 4 and summary["send_timing"]["count"] > 0
    assert result["log_lines_dropped"] <= 10  # at most one line a second per reason
