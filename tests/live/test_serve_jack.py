"""`livekomp serve` over real transports: driven by oscsend (liblo), heard by jack_midi_dump.

These take a few seconds of real time each: they prove the real thing, tempo and all.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import rtmidi

from livekomp.music.theory import detect_key
from tests.jack import jack_ports
from tools.peers import connect, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.liblo]

FRAME_RATE = 48_000
TICK = 0xF8


def split_by_beat(events):
    """Number every message by the beat it falls in, counting clock ticks after Start."""
    tick_count = -1
    started = False
    placed = []
    for frame, data in events:
        if data[0] == 0xFA:
            started, tick_count = True, -1
        elif data[0] == TICK and started:
            tick_count += 1
        elif started and tick_count >= 0:
            placed.append((tick_count / 24, frame, data))
    return placed


def tempo_from_ticks(events):
    """BPM from a least-squares line through the tick frames (JACK quantizes each to a period)."""
    frames = [frame for frame, data in events if data[0] == TICK]
    n = len(frames)
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, sum(frames) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, frames, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    seconds_per_tick = slope / FRAME_RATE
    return 60.0 / (seconds_per_tick * 24), n


def hanging_notes(events):
    sounding = set()
    for _, data in events:
        status = data[0] & 0xF0
        if status == 0x90 and data[2] > 0:
            sounding.add((data[0] & 0x0F, data[1]))
        elif status == 0x80 or (status == 0x90 and data[2] == 0):
            sounding.discard((data[0] & 0x0F, data[1]))
        elif status == 0xB0 and data[1] == 123:
            sounding = {note for note in sounding if note[0] != data[0] & 0x0F}
    return sounding


def test_a_valence_change_over_osc_is_heard_on_the_next_bars(serve_factory, midi_dump, tmp_path):
    dump = midi_dump()
    # The rule-based composer, whose modes follow valence bar for bar; the neural composer's
    # live path has its own test below.
    serve = serve_factory("--bpm", "120", "--key", "D", "--seed", "3", "--composer", "rules")
    connect(serve.port_label(), dump.port)
    serve.wait_ready()
    oscsend(serve.osc_port, "/livekomp/xy", "ff", 0.05, 0.6)  # sad, a little excited
    time.sleep(5.0)  # 2.5 bars at 120 BPM
    oscsend(serve.osc_port, "/livekomp/valence", "f", 0.9)  # happy
    time.sleep(6.0)
    assert serve.stop(signal.SIGTERM) == 0
    time.sleep(0.3)
    events = dump.events()

    bpm, ticks = tempo_from_ticks(events)
    assert ticks > 400
    assert bpm == pytest.approx(120.0, rel=0.005)

    channels = {data[0] & 0x0F for _, data in events if data[0] & 0xF0 == 0x90}
    assert channels == {0, 1, 2, 9}

    summary = json.loads(serve.summary_path.read_text())
    bars = summary["bars"]
    sad = [b["bar"] for b in bars if b["mood"]["valence"] < -0.5]
    happy = [b["bar"] for b in bars if b["mood"]["valence"] > 0.5]
    assert sad and happy and max(sad) < min(happy)

    def key_of(bar_numbers):
        wanted = set(bar_numbers)
        return detect_key(
            (data[1], 1.0)
            for beat, _, data in split_by_beat(events)
            if data[0] & 0xF0 == 0x90
            and data[2] > 0
            and data[0] & 0x0F != 9
            and int(beat // 4) in wanted
        )

    assert key_of(sad)[1] == "minor"
    assert key_of(happy)[1] == "major"
    assert summary["inputs"]["osc"]["dispatched"] >= 3

    assert not hanging_notes(events)
    tail = [data for _, data in events[-12:]]
    assert bytes([0xFC]) in tail  # MIDI Stop went out
    assert any(d[0] & 0xF0 == 0xB0 and d[1] == 123 for d in tail)  # and All Notes Off


@pytest.mark.parametrize(
    ("signum", "group"),
    [
        (signal.SIGINT, False),
        (signal.SIGTERM, False),
        (signal.SIGINT, True),
        (signal.SIGTERM, True),
    ],
    ids=["SIGINT", "SIGTERM", "Ctrl-C to the group", "SIGTERM to the group"],
)
def test_every_way_of_stopping_releases_all_notes(serve_factory, midi_dump, signum, group):
    dump = midi_dump()
    # Long, dense notes, so some are surely sounding when the signal lands.
    serve = serve_factory("--bpm", "90")
    connect(serve.port_label(), dump.port)
    serve.wait_ready()
    oscsend(serve.osc_port, "/livekomp/arousal", "f", -0.9)
    time.sleep(3.3)
    assert serve.stop(signum, group=group) == 0
    time.sleep(0.3)
    events = dump.events()
    assert any(data[0] & 0xF0 == 0x90 for _, data in events)
    assert not hanging_notes(events)
    channels_used = {data[0] & 0x0F for _, data in events if data[0] < 0xF0}
    all_notes_off = {
        data[0] & 0x0F for _, data in events if data[0] & 0xF0 == 0xB0 and data[1] == 123
    }
    assert channels_used <= all_notes_off
    assert "stopping, releasing all notes" in serve.log()
    assert "Traceback" not in serve.log()


def test_panic_and_bad_input_do_not_stop_the_music(serve_factory, midi_dump):
    dump = midi_dump()
    serve = serve_factory("--bpm", "120")
    connect(serve.port_label(), dump.port)
    serve.wait_ready()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for garbage in (
            b"\x00\x01garbage",
            b"/livekomp/valence\x00\x00\x00,s\x00\x00hi\x00\x00",
            b"#bundle\x00",
        ):
            sock.sendto(garbage, ("127.0.0.1", serve.osc_port))
    oscsend(serve.osc_port, "/no/such/address", "f", 1.0)
    oscsend(serve.osc_port, "/livekomp/valence", "f", 7.0)  # out of range
    time.sleep(2.5)
    oscsend(serve.osc_port, "/livekomp/panic")
    time.sleep(0.3)
    panic_at = len(dump.events())
    time.sleep(2.5)
    assert serve.stop() == 0
    time.sleep(0.3)
    events = dump.events()
    after_panic = events[panic_at:]
    assert any(data[0] & 0xF0 == 0x90 for _, data in after_panic)  # the music came back
    assert any(data[0] == TICK for _, data in after_panic)
    # A panic is no Stop: the first MIDI Stop is the server's own, after the last note.
    first_stop = next((i for i, (_, data) in enumerate(events) if data[0] == 0xFC), len(events))
    last_note = max(i for i, (_, data) in enumerate(events) if data[0] & 0xF0 == 0x90)
    assert first_stop > last_note
    assert not hanging_notes(events)
    inputs = json.loads(serve.summary_path.read_text())["inputs"]["osc"]
    assert sum(inputs.get(reason, 0) for reason in ("malformed", "bad_args")) >= 2
    assert inputs.get("unknown_address", 0) >= 1
    assert inputs.get("out_of_range", 0) >= 1
    assert "panic: all notes released" in serve.log()


def test_a_midi_controller_steers_the_mood(serve_factory):
    serve = serve_factory("--bpm", "150")
    serve.wait_ready()
    (livekomp_in,) = [p for p in jack_ports() if p.endswith(":livekomp in")]
    controller = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="lk-test-controller")
    try:
        controller.open_virtual_port("faders")
        (faders,) = [p for p in jack_ports() if p.endswith(":faders")]
        connect(faders, livekomp_in)
        controller.send_message([0xB0, 1, 0])  # CC 1 → valence −1
        controller.send_message([0xB3, 2, 127])  # CC 2 on channel 4 → arousal +1
        time.sleep(3.5)  # two bars at 150 BPM: the next bar line has passed
    finally:
        controller.delete()
    assert serve.stop() == 0
    summary = json.loads(serve.summary_path.read_text())
    last = summary["bars"][-1]["mood"]
    assert last["valence"] == pytest.approx(-1.0, abs=0.05)
    assert last["arousal"] == pytest.approx(1.0, abs=0.05)
    assert summary["inputs"]["midi"]["dispatched"] == 2


def test_even_a_killed_server_leaves_no_note_hanging(serve_factory, midi_dump):
    """SIGKILL gives the server no chance to clean up; its sender process does it instead."""
    dump = midi_dump()
    serve = serve_factory("--bpm", "90")
    connect(serve.port_label(), dump.port)
    serve.wait_ready()
    oscsend(serve.osc_port, "/livekomp/arousal", "f", -0.9)  # long notes
    time.sleep(3.3)
    serve.process.kill()
    serve.process.wait(timeout=10)
    time.sleep(1.0)  # the sender notices its parent is gone and releases
    events = dump.events()
    last_tick = max(i for i, (_, data) in enumerate(events) if data[0] == TICK)
    assert hanging_notes(events[: last_tick + 1])  # notes were sounding when the server died
    assert not hanging_notes(events)  # and the sender released every one
    assert bytes([0xFC]) in [data for _, data in events[-12:]]


def test_the_neural_composer_plays_live_while_the_pad_sweeps(serve_factory, midi_dump):
    """The shipped checkpoints load, warm up, and compose off the trio thread; every bar sounds."""
    dump = midi_dump()
    serve = serve_factory("--bpm", "140", "--composer", "neural")
    connect(serve.port_label(), dump.port)
    serve.wait_ready(timeout_s=60.0)  # torch import and warm-up come first
    assert "neural composer ready" in serve.log()
    for i in range(12):
        oscsend(serve.osc_port, "/livekomp/xy", "ff", (i % 4) / 3, ((i * 7) % 5) / 4)
        time.sleep(0.5)
    assert serve.stop(signal.SIGTERM) == 0
    time.sleep(0.3)
    events = dump.events()
    summary = json.loads(serve.summary_path.read_text())
    composer = summary["composer"]
    assert composer["primary"] == "neural", composer.get("neural_unavailable")
    outcomes = composer["outcomes"]
    assert outcomes.get("fresh", 0) >= 1
    assert sum(outcomes.get(k, 0) for k in ("fresh", "buffered", "fallback")) == len(
        summary["bars"]
    )
    bars_heard = {
        int(beat // 4)
        for beat, _, data in split_by_beat(events)
        if data[0] & 0xF0 == 0x90 and data[2] > 0
    }
    assert bars_heard >= set(range(len(summary["bars"]) - 1))  # no bar without music
    assert not hanging_notes(events)


def test_a_style_switch_over_osc_is_heard_from_the_next_bar(serve_factory, midi_dump, tmp_path):
    """A real adapter, fine-tuned here in seconds, loaded at start and switched to over OSC."""
    from livekomp.models.finetune import FinetuneOptions, finetune
    from tools.style_corpus import write_corpus

    corpus = write_corpus(tmp_path / "midi", songs=8)
    options = FinetuneOptions(midi=corpus, name="penta", epochs=3, device="cpu")
    finetune(options, tmp_path / "adapters", progress=False, say=lambda line: None)
    dump = midi_dump()
    serve = serve_factory(
        "--bpm", "160", "--composer", "neural", "--device", "cpu",
        "--style", "base", "--style", "penta", "--adapters", str(tmp_path / "adapters"),
    )  # fmt: skip
    connect(serve.port_label(), dump.port)
    serve.wait_ready(timeout_s=90.0)
    assert "styles loaded: penta; playing base" in serve.log()
    time.sleep(3.0)  # two bars at 160 BPM
    oscsend(serve.osc_port, "/livekomp/style", "s", "penta")
    switched = serve.wait_for("style → penta from bar")
    time.sleep(3.0)
    oscsend(serve.osc_port, "/livekomp/style", "s", "no-such-style")  # counted and dropped
    time.sleep(1.0)
    assert serve.stop(signal.SIGTERM) == 0
    time.sleep(0.3)
    events = dump.events()
    summary = json.loads(serve.summary_path.read_text())
    first_styled = int(switched.rsplit("from bar", 1)[1].split()[0])
    styles = [bar.get("style", "base") for bar in summary["bars"]]
    assert styles == ["base"] * first_styled + ["penta"] * (len(styles) - first_styled)
    assert len(styles) > first_styled, "bars played in the new style"
    assert summary["composer"]["styles"] == ["penta"]
    assert summary["composer"]["style_switches"] == 1
    assert summary["styles_dropped"] == 1
    bars_heard = {
        int(beat // 4)
        for beat, _, data in split_by_beat(events)
        if data[0] & 0xF0 == 0x90 and data[2] > 0
    }
    assert bars_heard >= set(range(len(styles) - 1))  # no bar without music, across the switch
    assert not hanging_notes(events)
