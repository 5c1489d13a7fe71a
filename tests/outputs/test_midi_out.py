"""MIDI outputs: the fakes and wrappers in memory, the rtmidi port against a real JACK peer."""

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import rtmidi

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.dispatcher import Dispatcher
from livekomp.dispatch.tracked import FanOut, TrackedOutput
from livekomp.midiports import MidiPortError
from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    CLOCK_TICK,
    ScheduledMessage,
    control_change,
    note_off,
    note_on,
)
from livekomp.outputs.midi import MemoryOutput, RtMidiOutput, list_ports
from tests.jack import jack_ports

JACK = rtmidi.API_UNIX_JACK
TICK = bytes((CLOCK_TICK,))


def all_notes_off(channel: int) -> bytes:
    return control_change(channel, CC_ALL_NOTES_OFF, 0)


# -- in memory -------------------------------------------------------------------------------


def test_memory_output_records_beat_data_and_time() -> None:
    times = iter([1.5, 2.5])
    out = MemoryOutput(now_s=lambda: next(times))
    out.send(note_on(0, 60, 100), 4.0)
    out.send(bytearray(TICK), 4.5)
    assert out.sent == [(4.0, note_on(0, 60, 100), 1.5), (4.5, TICK, 2.5)]
    assert out.data == [note_on(0, 60, 100), TICK]
    out.close()
    with pytest.raises(MidiPortError):
        out.send(TICK, 5.0)


class Failing(MemoryOutput):
    def send(self, data: bytes, beat: float) -> None:
        raise OSError("disk full")


def test_fan_out_sends_to_every_sink_even_if_one_fails() -> None:
    first, broken, last = MemoryOutput(), Failing(), MemoryOutput()
    fan = FanOut([first, broken, last])
    with pytest.raises(OSError, match="disk full"):
        fan.send(TICK, 1.0)
    assert first.data == [TICK] and last.data == [TICK]
    fan.close()
    assert first.closed and broken.closed and last.closed


def test_tracked_output_remembers_notes_and_channels() -> None:
    sink = MemoryOutput()
    out = TrackedOutput(sink)
    out.send(note_on(0, 60, 100), 0)
    out.send(note_on(2, 67, 100), 0)
    out.send(control_change(9, 7, 100), 0)
    out.send(TICK, 0)
    assert out.sounding == {(0, 60), (2, 67)}
    assert out.channels_used == {0, 2, 9}
    out.send(note_off(0, 60), 1)
    out.send(bytes((0x92, 67, 0)), 1)  # a note-on with velocity 0 is a note-off
    assert out.sounding == frozenset()


def test_release_all_sends_note_offs_then_all_notes_off_per_channel() -> None:
    sink = MemoryOutput()
    out = TrackedOutput(sink)
    out.send(note_on(3, 64, 100), 0)
    out.send(note_on(0, 60, 100), 0)
    out.send(control_change(5, 1, 0), 0)
    start = len(sink.sent)
    out.release_all(2.5)
    assert sink.sent[start:] == [
        (2.5, note_off(0, 60), pytest.approx(sink.sent[start].time_s)),
        (2.5, note_off(3, 64), pytest.approx(sink.sent[start + 1].time_s)),
        (2.5, all_notes_off(0), pytest.approx(sink.sent[start + 2].time_s)),
        (2.5, all_notes_off(3), pytest.approx(sink.sent[start + 3].time_s)),
        (2.5, all_notes_off(5), pytest.approx(sink.sent[start + 4].time_s)),
    ]
    assert out.sounding == frozenset()


def test_restruck_note_is_released_first_and_not_cut_by_the_old_note_off() -> None:
    sink = MemoryOutput()
    out = TrackedOutput(sink)
    out.send(note_on(0, 60, 100), 0)
    out.send(note_on(0, 60, 80), 1)  # still sounding: released first, no stuck double
    out.send(note_off(0, 60), 2)  # the first note's off: absorbed, the second keeps sounding
    assert out.sounding == {(0, 60)}
    out.send(note_off(0, 60), 3)
    assert sink.data == [note_on(0, 60, 100), note_off(0, 60), note_on(0, 60, 80), note_off(0, 60)]
    assert out.sounding == frozenset()


def test_orphan_note_offs_are_dropped_and_all_notes_off_clears_a_channel() -> None:
    sink = MemoryOutput()
    out = TrackedOutput(sink)
    out.send(note_off(0, 60), 0)  # its note-on was never sent
    assert sink.data == []
    out.send(note_on(1, 40, 100), 0)
    out.send(note_on(2, 41, 100), 0)
    out.send(all_notes_off(1), 1)
    assert out.sounding == {(2, 41)}


def test_tracked_output_failing_send_still_counts_the_note() -> None:
    out = TrackedOutput(Failing())
    with pytest.raises(OSError):
        out.send(note_on(0, 60, 100), 0)
    assert out.sounding == {(0, 60)}


def test_tracked_output_is_thread_safe() -> None:
    sink = MemoryOutput()
    out = TrackedOutput(sink)

    def play(channel: int) -> None:
        for i in range(2000):
            pitch = 30 + i % 60
            out.send(note_on(channel, pitch, 100), i)
            if i % 3:
                out.send(note_off(channel, pitch), i)

    players = [threading.Thread(target=play, args=(c,)) for c in range(4)]
    for player in players:
        player.start()
    for _ in range(50):
        out.release_all(0)
    for player in players:
        player.join()
    out.release_all(0)
    assert out.sounding == frozenset()
    assert sink.data[-4:] == [all_notes_off(c) for c in range(4)]


# -- a real JACK server ----------------------------------------------------------------------


needs_jack = pytest.mark.usefixtures("jack_server")


def wait_for_port(name: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while name not in jack_ports():
        if time.monotonic() > deadline:
            raise AssertionError(f"JACK port {name} never appeared")
        time.sleep(0.05)


class MidiDump:
    """jack_midi_dump, the real third-party receiver; lines look like
    `   0: 90 3c 64 note on  (channel  0): pitch  60, velocity 100`."""

    def __init__(self) -> None:
        self.client = f"lkdump{os.getpid()}x{time.monotonic_ns() % 10**6}"
        self.input = f"{self.client}:input"
        self._proc = subprocess.Popen(
            ["jack_midi_dump", self.client],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        wait_for_port(self.input)

    def connect_from(self, source: str) -> None:
        subprocess.run(["jack_connect", source, self.input], check=True, timeout=10)

    def stop(self) -> list[bytes]:
        """Stop it; the messages it received as raw bytes."""
        self._proc.terminate()
        stdout, _ = self._proc.communicate(timeout=10)
        messages = []
        for line in stdout.splitlines():
            match = re.match(r"\s*\d+:((?: [0-9a-f]{2})+)", line)
            if match:
                messages.append(bytes.fromhex(match.group(1)))
        return messages

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture
def dump() -> Iterator[MidiDump]:
    receiver = MidiDump()
    yield receiver
    receiver.kill()


def wait_for_messages(count: int, dump: MidiDump) -> list[bytes]:
    time.sleep(0.3)  # a few JACK periods for the last message to cross
    messages = dump.stop()
    assert len(messages) >= count, messages
    return messages


@pytest.mark.jack
@needs_jack
def test_virtual_port_reaches_jack_midi_dump(dump: MidiDump) -> None:
    out = RtMidiOutput(None, api=JACK)
    try:
        assert re.fullmatch(r"livekomp(-\d+)?:out", out.port_label)
        wait_for_port(out.port_label)
        dump.connect_from(out.port_label)
        out.send(note_on(0, 60, 100), 0.0)
        out.send(TICK, 0.0)
        out.send(note_off(0, 60), 1.0)
        messages = wait_for_messages(3, dump)
    finally:
        out.close()
    assert messages == [note_on(0, 60, 100), TICK, note_off(0, 60)]


@pytest.mark.jack
@needs_jack
def test_a_second_virtual_port_gets_its_own_label() -> None:
    first = RtMidiOutput(None, api=JACK)
    try:
        second = RtMidiOutput(None, api=JACK)
        try:
            assert first.port_label != second.port_label
            ports = jack_ports()
            assert first.port_label in ports and second.port_label in ports
            inputs, _ = list_ports(JACK)
            assert first.port_label in inputs  # a source of MIDI for others
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.jack
@needs_jack
def test_named_port_and_dispatcher_through_jack(dump: MidiDump) -> None:
    port = RtMidiOutput(dump.client.upper(), api=JACK)  # case-insensitive substring
    assert port.port_label == dump.input
    _, outputs = list_ports(JACK)
    assert dump.input in outputs
    clock = MasterClock(300)
    dispatcher = Dispatcher(clock, TrackedOutput(port))
    dispatcher.start()
    try:
        clock.start()
        dispatcher.submit(
            [
                ScheduledMessage.at(0.1, note_on(1, 64, 90)),
                ScheduledMessage.at(0.1, TICK),
                ScheduledMessage.at(0.5, note_off(1, 64)),
            ]
        )
        while dispatcher.pending:
            time.sleep(0.01)
    finally:
        dispatcher.close()
        port.close()
    messages = wait_for_messages(3, dump)
    assert messages[:3] == [TICK, note_on(1, 64, 90), note_off(1, 64)]
    assert messages[3:] == [all_notes_off(1)]  # closing panics


@pytest.mark.jack
@needs_jack
def test_unknown_port_name_lists_the_ports() -> None:
    with pytest.raises(MidiPortError, match="no MIDI output port matches 'no-such-port'"):
        RtMidiOutput("no-such-port", api=JACK)


@pytest.mark.skipif(JACK not in rtmidi.get_compiled_api(), reason="rtmidi built without JACK")
def test_no_jack_server_gives_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"livekomp-test-absent-{os.getpid()}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(MidiPortError, match="jackd -d dummy"):
        RtMidiOutput(None, api=JACK)
    with pytest.raises(MidiPortError, match="jackd -d dummy"):
        list_ports(JACK)
