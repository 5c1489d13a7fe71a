"""OSC feedback from `livekomp serve`, heard by liblo's `oscdump` (a third-party receiver)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tools.peers import free_udp_port, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.liblo]


def test_feedback_reaches_oscdump(serve_factory, tmp_path):
    if shutil.which("oscdump") is None:
        pytest.skip("no oscdump: install liblo-tools (Debian)")
    port = free_udp_port()
    dump_path = tmp_path / "oscdump.txt"
    out = dump_path.open("w")
    dump = subprocess.Popen(["stdbuf", "-oL", "oscdump", "-L", str(port)], stdout=out)

    def values(address: str) -> list[str]:
        """The arguments of each message to `address` (oscdump: timetag address types args)."""
        fields = [line.split(None, 3) for line in dump_path.read_text().splitlines()]
        return [f[3] for f in fields if len(f) == 4 and f[1] == address]

    def heard_all() -> bool:
        return (
            any("Before the light" in v for v in values("/livekomp/fb/line"))
            and max((int(v) for v in values("/livekomp/fb/bar")), default=0) >= 2
            and {int(v) for v in values("/livekomp/fb/beat")} == {1, 2, 3, 4}
            and int((values("/livekomp/fb/composer/fresh") or ["0"])[-1]) >= 2
            and abs(float((values("/livekomp/fb/valence") or ["0"])[-1]) + 0.8) <= 0.01
        )

    try:
        serve = serve_factory("--bpm", "120", "--feedback", f"127.0.0.1:{port}")
        serve.wait_ready()
        started_s = time.monotonic()
        time.sleep(2.5)
        oscsend(serve.osc_port, "/livekomp/valence", "f", -0.8)
        oscsend(serve.osc_port, "/livekomp/say", "s", "Before the light")
        # Wait for what the feedback must say, not for a fixed time: a fixed 2 s raced the
        # line (it is published once placed on a bar line) and the bar count.
        deadline = time.monotonic() + 15.0
        while not heard_all():
            assert time.monotonic() < deadline, dump_path.read_text()[-2000:]
            time.sleep(0.05)
        assert serve.stop() == 0
        ran_s = time.monotonic() - started_s
    finally:
        dump.terminate()
        dump.wait(timeout=10)
        out.close()

    assert float(values("/livekomp/fb/tempo")[0]) == pytest.approx(120.0)
    # Rate-limited: at most 10 snapshots a second (and one at start), each sending only what
    # changed (fewer than 6 addresses a snapshot on average).
    assert len(dump_path.read_text().splitlines()) < (ran_s * 10 + 1) * 6
