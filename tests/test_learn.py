"""MIDI learn: the control moved for each parameter, written as a mapping file that loads and
maps those controls; once with messages in memory, once through JACK from a virtual controller."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import rtmidi
import trio

from livekomp.inputs.events import Param
from livekomp.inputs.mapping import load_mapping
from livekomp.learn import Learner, learn_controls, mapping_text
from tests.jack import jack_ports
from tools.peers import REPO

MOVES = [
    bytes((0xB0, 7, 64)),  # a touched fader on channel 1: one value is not a move
    bytes((0xB0, 7, 70)),  # → valence: CC 7
    bytes((0xB0, 7, 71)),  # still settling: already taken, ignored for arousal
    bytes((0x90, 60, 100)),  # a key: not a fader
    bytes((0xB2, 21, 10)),
    bytes((0xB2, 21, 30)),  # → arousal: CC 21 on channel 3
    bytes((0xB0, 118, 0)),  # a button's release: no press
    bytes((0x99, 36, 90)),  # → start: pad note 36 on channel 10
]


async def test_learns_each_parameter_from_what_moves(autojump_clock):
    send, receive = trio.open_memory_channel[bytes](64)
    for message in MOVES:
        send.send_nowait(message)
    said: list[str] = []
    learned = await learn_controls(
        receive,
        [Param.VALENCE, Param.AROUSAL, Param.START, Param.PANIC],
        timeout_s=5.0,
        say=said.append,
    )
    assert [(x.param, x.kind, x.number, x.channel) for x in learned] == [
        (Param.VALENCE, "cc", 7, 1),
        (Param.AROUSAL, "cc", 21, 3),
        (Param.START, "note", 36, 10),
    ]
    assert "    panic: skipped" in said  # nothing pressed within the timeout


def test_a_learned_file_loads_and_maps_the_learned_controls(tmp_path):
    taken: set = set()
    learned = []
    for param, messages in [
        (Param.VALENCE, [bytes((0xB0, 7, 0)), bytes((0xB0, 7, 5))]),
        (Param.TEMPO, [bytes((0xB4, 9, 0)), bytes((0xB4, 9, 127))]),
        (Param.PANIC, [bytes((0xB0, 64, 127))]),
    ]:
        learner = Learner(param, taken)
        found = [learner.feed(m) for m in messages][-1]
        assert found is not None
        taken.add(found.control)
        learned.append(found)
    path = tmp_path / "mine.toml"
    path.write_text(mapping_text(learned, "mine"))
    mapping = load_mapping([path])
    assert mapping.midi_events(bytes((0xB0, 7, 127)))[0].value == 1.0
    assert mapping.midi_events(bytes((0xB4, 9, 127)))[0].value == 180.0
    assert mapping.midi_events(bytes((0xB0, 64, 127)))[0].param is Param.PANIC


@pytest.mark.jack
def test_livekomp_learn_over_jack(tmp_path, jack_server):
    controller = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="lk-learn-ctl")
    controller.open_virtual_port("knobs")
    out = tmp_path / "learned.toml"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "livekomp.cli",
            "learn",
            "--midi-api",
            "jack",
            "--out",
            str(out),
            "--midi-in",
            "lk-learn-ctl:knobs",
            "--params",
            "valence,arousal,stop",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not any(p.endswith(":learn in") for p in jack_ports()):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        for message in ([0xB0, 3, 1], [0xB0, 3, 2], [0xB0, 4, 100], [0xB0, 4, 90], [0x90, 40, 80]):
            controller.send_message(message)
            time.sleep(0.1)
        output, _ = process.communicate(timeout=20)
    finally:
        controller.delete()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    mapping = load_mapping([out])
    assert mapping.midi_events(bytes((0xB0, 3, 0)))[0].param is Param.VALENCE
    assert mapping.midi_events(bytes((0xB0, 4, 0)))[0].param is Param.AROUSAL
    assert mapping.midi_events(bytes((0x90, 40, 1)))[0].param is Param.STOP
