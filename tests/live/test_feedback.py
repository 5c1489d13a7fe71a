"""OSC feedback from `livekomp serve`, heard by liblo's `oscdump` (a third-party receiver)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.live.peers import free_udp_port, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.liblo]


def test_feedback_reaches_oscdump(serve_factory, tmp_path):
    if shutil.which("oscdump") is None:
        pytest.skip("no oscdump: install liblo-tools (Debian)")
    port = free_udp_port()
    out = (tmp_path / "oscdump.txt").open("w")
    dump = subprocess.Popen(["stdbuf", "-oL", "oscdump", "-L", str(port)], stdout=out)
    try:
        serve = serve_factory("--bpm", "120", "--feedback", f"127.0.0.1:{port}")
        serve.wait_for("listening for OSC")
        started_s = time.monotonic()
        time.sleep(2.5)
        oscsend(serve.osc_port, "/livekomp/valence", "f", -0.8)
        oscsend(serve.osc_port, "/livekomp/say", "s", "Before the light")
        # The line starts on a bar line once rendered (up to two bars, 4 s, away): wait for
        # its feedback rather than a fixed time, which raced the bar line.
        deadline = time.monotonic() + 15.0
        while "Before the light" not in (tmp_path / "oscdump.txt").read_text():
            assert time.monotonic() < deadline, "no /livekomp/fb/line feedback for the line"
            time.sleep(0.05)
        assert serve.stop() == 0
        ran_s = time.monotonic() - started_s
    finally:
        dump.terminate()
        dump.wait(timeout=10)
        out.close()
    lines = (tmp_path / "oscdump.txt").read_text().splitlines()

    def values(address: str) -> list[str]:
        """The arguments of each message to `address` (oscdump: timetag address types args)."""
        fields = [line.split(None, 3) for line in lines]
        return [f[3] for f in fields if len(f) == 4 and f[1] == address]

    assert float(values("/livekomp/fb/tempo")[0]) == pytest.approx(120.0)
    assert {int(v) for v in values("/livekomp/fb/beat")} == {1, 2, 3, 4}
    assert max(int(v) for v in values("/livekomp/fb/bar")) >= 2
    assert float(values("/livekomp/fb/valence")[-1]) == pytest.approx(-0.8, abs=0.01)
    assert any("Before the light" in v for v in values("/livekomp/fb/line"))
    assert int(values("/livekomp/fb/composer/fresh")[-1]) >= 2
    # Rate-limited: at most 10 snapshots a second (and one at start), each sending only what
    # changed (fewer than 6 addresses a snapshot on average).
    assert len(lines) < (ran_s * 10 + 1) * 6
