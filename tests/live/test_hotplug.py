"""Hot-plug: a MIDI output or input that disappears is reopened when it comes back, without a
restart; the notes a lost output was sounding are released in the recording and on its return.

The "device" is a JACK client that goes away and comes back under the same name, as a USB
interface does when it is unplugged and plugged in again.
"""

from __future__ import annotations

import json
import re
import time

import mido
import pytest
import rtmidi

from tests.jack import jack_ports
from tests.live.test_serve_jack import hanging_notes
from tools.peers import MidiDump, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.liblo]


def test_a_lost_output_is_released_and_reopened_when_it_returns(serve_factory, tmp_path):
    name = "lkhotout"
    first = MidiDump(tmp_path, name)
    serve = serve_factory("--bpm", "100", "--midi-out", first.port)
    try:
        serve.wait_ready()
        oscsend(serve.osc_port, "/livekomp/arousal", "f", -0.9)  # long notes: some sound
        time.sleep(3.0)
        first.close()  # unplugged
        lost = serve.wait_for("is gone", timeout_s=10)
        time.sleep(1.0)
        (tmp_path / "again").mkdir()
        second = MidiDump(tmp_path / "again", name)  # plugged in again
        try:
            back = serve.wait_for("is back: reopened", timeout_s=10)
            deadline = time.monotonic() + 15  # until the music reaches the device again
            while not any(d[0] & 0xF0 == 0x90 and d[2] for _, d in second.events()):
                assert time.monotonic() < deadline, "no note reached the returned device"
                time.sleep(0.1)
            time.sleep(1.0)
            assert serve.stop() == 0
            time.sleep(0.3)
            events = second.events()
        finally:
            second.close()
    finally:
        first.close()  # idempotent
    assert first.port in lost and first.port in back
    released = int(re.search(r"is gone: (\d+) sounding notes released", lost)[1])
    missed = int(re.search(r"the (\d+) notes it missed", back)[1])
    assert missed == released
    # The returning device first hears the releases it missed, then the music again.
    first_note_on = next(i for i, (_, d) in enumerate(events) if d[0] & 0xF0 == 0x90 and d[2])
    head = [d for _, d in events[:first_note_on]]
    assert sum(1 for d in head if d[0] & 0xF0 == 0x80) >= missed
    assert any(d[0] & 0xF0 == 0xB0 and d[1] == 123 for d in head)
    assert not hanging_notes(events)
    # The recording went on throughout, nothing left hanging in it.
    recording = mido.MidiFile(serve.record_path)
    sounding: set[tuple[int, int]] = set()
    for message in mido.merge_tracks(recording.tracks):
        if message.type == "note_on" and message.velocity:
            sounding.add((message.channel, message.note))
        elif message.type in ("note_off", "note_on"):
            sounding.discard((message.channel, message.note))
    assert not sounding
    assert "Traceback" not in serve.log()


def test_a_lost_controller_input_is_reopened_when_it_returns(serve_factory):
    def plug_in() -> rtmidi.MidiOut:
        controller = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="lk-hot-ctl")
        controller.open_virtual_port("faders")
        return controller

    controller = plug_in()
    (port,) = [p for p in jack_ports() if p.endswith("lk-hot-ctl:faders")]
    serve = serve_factory("--bpm", "150", "--midi-in", port)
    serve.wait_ready()
    controller.delete()  # unplugged
    serve.wait_for("is gone", timeout_s=10)
    controller = plug_in()
    try:
        serve.wait_for("is back: reopened", timeout_s=10)
        controller.send_message([0xB0, 1, 0])  # CC 1 → valence −1
        time.sleep(3.5)  # past the next bar line
    finally:
        controller.delete()
    assert serve.stop() == 0
    summary = json.loads(serve.summary_path.read_text())
    assert summary["inputs"]["midi"]["dispatched"] == 1
    assert summary["bars"][-1]["mood"]["valence"] == pytest.approx(-1.0, abs=0.05)
