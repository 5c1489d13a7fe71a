"""The sender process: the same behaviour as the thread dispatcher, plus what a process adds
(start-up handshake, a shared time base, signals, the parent's death).

Live tests assert order and "never early", never how late: machines are noisy. The JACK tests
use a real third-party receiver (`jack_midi_dump`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest
import rtmidi
import trio

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.dispatcher import DispatcherError
from livekomp.dispatch.sender import ProcessDispatcher, open_process_dispatcher
from livekomp.midiports import MidiPortError
from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    CLOCK_STOP,
    control_change,
    note_off,
    note_on,
)
from livekomp.outputs.midi import OutputSpec
from livekomp.outputs.midifile import RecordSpec
from tests.dispatch.common import BPM, ORDERING_CASE, ORDERING_EXPECTED, TICK, at, wait_for
from tools.peers import MidiDump, connect

STOP = bytes((CLOCK_STOP,))
REPO = Path(__file__).resolve().parents[2]


class Rig:
    """A clock and a started sender process with an in-memory output."""

    def __init__(self, output: OutputSpec | None = None, record: RecordSpec | None = None) -> None:
        self.clock = MasterClock(BPM)
        self.dispatcher = ProcessDispatcher(
            self.clock, output or OutputSpec.memory(), record=record
        )
        self.dispatcher.start()

    def wait_sent(self, count: int) -> None:
        wait_for(lambda: self.dispatcher.status().sent >= count)

    def sent_data(self) -> list[bytes]:
        return [m.data for m in self.dispatcher.sent]


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    yield rig
    rig.dispatcher.close()
    assert not rig.dispatcher.process_alive


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def recorded_messages(path: Path) -> list[bytes]:
    """The notes and controllers of a recorded file, track by track."""
    kinds = ("note_on", "note_off", "control_change")
    midi = mido.MidiFile(path)
    return [bytes(m.bytes()) for track in midi.tracks for m in track if m.type in kinds]


# -- sending -------------------------------------------------------------------------------------


def test_messages_arrive_complete_in_beat_and_send_order(rig: Rig) -> None:
    messages = ORDERING_CASE
    rig.clock.start()
    rig.dispatcher.submit(reversed(messages))
    rig.wait_sent(len(messages))
    tempo_map = rig.clock.tempo_map
    rig.dispatcher.close()

    assert rig.sent_data() == [
        *ORDERING_EXPECTED,
        control_change(0, CC_ALL_NOTES_OFF, 0),  # closing releases: CC 123 on the channels used
        control_change(1, CC_ALL_NOTES_OFF, 0),
    ]
    # Stamped with the child's perf_counter, compared with the parent's tempo map: never early.
    for message in rig.dispatcher.sent[: len(messages)]:
        assert message.time_s >= tempo_map.time_at(message.beat)
    assert rig.dispatcher.summary()["count"] == len(messages)
    assert min(rig.dispatcher.stats.lateness_s) >= 0


def test_parent_and_child_read_the_same_perf_counter(rig: Rig) -> None:
    for _ in range(5):
        before_s = time.perf_counter()
        child_s = rig.dispatcher.status().time_s
        after_s = time.perf_counter()
        assert before_s <= child_s <= after_s


def test_a_tempo_change_moves_pending_messages(rig: Rig) -> None:
    rig.clock.start()
    rig.dispatcher.submit([at(0.5, TICK), at(3, note_on(0, 60, 100))])
    rig.wait_sent(1)
    old_deadline_s = rig.clock.time_at(3)
    assert rig.clock.set_tempo(BPM / 2) == 1.0
    new_deadline_s = rig.clock.time_at(3)
    assert new_deadline_s > old_deadline_s + 0.2
    rig.wait_sent(2)
    rig.dispatcher.close()
    assert rig.dispatcher.sent[1].data == note_on(0, 60, 100)
    assert rig.dispatcher.sent[1].time_s >= new_deadline_s


def test_it_waits_while_the_clock_is_stopped(rig: Rig) -> None:
    rig.dispatcher.submit([at(0, note_on(0, 60, 100))])
    # The child answers in order: by its answer it has taken the message and not sent it.
    status = rig.dispatcher.status()
    assert (status.pending, status.sent) == (1, 0)
    # Beat 0 falls 0.3 s after the start: a message sent while stopped would carry an earlier
    # time, however late it went.
    start_s = rig.clock.now_s() + 0.3
    rig.clock.start(start_s)
    rig.wait_sent(1)
    rig.dispatcher.close()
    assert rig.dispatcher.sent[0].time_s >= start_s


def test_cancel_from_keeps_note_offs_of_sounding_notes(rig: Rig) -> None:
    rig.clock.start()
    rig.dispatcher.submit([at(0.25, note_on(0, 60, 100))])
    rig.wait_sent(1)
    rig.dispatcher.submit(
        [
            at(4, note_on(0, 62, 100)),
            at(5, control_change(0, 1, 64)),
            at(6, note_off(0, 62)),
            at(7, note_off(0, 60)),
        ]
    )
    rig.dispatcher.cancel_from(3)
    assert rig.dispatcher.status().pending == 2  # the two note-offs
    wait_for(lambda: rig.dispatcher.status().pending == 0)
    rig.dispatcher.close()
    # the note-off for 62, whose note-on was cancelled, is absorbed by the tracked output
    assert rig.sent_data()[:2] == [note_on(0, 60, 100), note_off(0, 60)]


def test_panic_releases_every_note_and_keeps_the_clock(rig: Rig) -> None:
    rig.clock.start()
    ticks = [at(beat / 24, TICK) for beat in range(24 * 60)]  # 60 beats of MIDI clock
    rig.dispatcher.submit(
        [
            at(0, note_on(0, 60, 100)),
            at(0, note_on(3, 64, 100)),
            at(0, control_change(5, 1, 10)),
            at(30, note_off(0, 60)),
            at(30, note_off(3, 64)),
            at(31, note_on(9, 36, 100)),
            *ticks,
        ]
    )
    rig.wait_sent(4)
    rig.dispatcher.panic(keep_clock=True)
    status = rig.dispatcher.status()
    assert status.sounding == frozenset()
    sent_at_panic = status.sent
    rig.wait_sent(sent_at_panic + 5)  # the clock goes on
    status = rig.dispatcher.status()
    assert status.pending == len(ticks) - (status.sent - 3)  # only ticks are left
    rig.dispatcher.close()

    sent = rig.sent_data()
    released = [data for data in sent if data != TICK][3:]
    assert released[:5] == [
        note_off(0, 60),
        note_off(3, 64),
        control_change(0, CC_ALL_NOTES_OFF, 0),
        control_change(3, CC_ALL_NOTES_OFF, 0),
        control_change(5, CC_ALL_NOTES_OFF, 0),
    ]
    assert note_on(9, 36, 100) not in sent


def test_panic_without_keep_clock_drops_everything(rig: Rig) -> None:
    rig.clock.start()
    rig.dispatcher.submit([at(0, note_on(0, 60, 100)), *(at(b / 24, TICK) for b in range(240))])
    rig.wait_sent(1)
    rig.dispatcher.panic()
    status = rig.dispatcher.status()
    assert status.pending == 0
    assert status.sounding == frozenset()


def test_close_releases_returns_and_refuses_more() -> None:
    rig = Rig()
    rig.clock.start()
    rig.dispatcher.submit([at(0, note_on(2, 50, 100)), at(50, note_off(2, 50))])
    rig.wait_sent(1)
    rig.dispatcher.close(send_stop=True)
    assert not rig.dispatcher.process_alive
    assert rig.sent_data() == [
        note_on(2, 50, 100),
        note_off(2, 50),
        control_change(2, CC_ALL_NOTES_OFF, 0),
        STOP,
    ]
    with pytest.raises(DispatcherError, match="closed"):
        rig.dispatcher.submit([at(60, TICK)])
    rig.dispatcher.panic()  # never raises
    rig.dispatcher.close()  # idempotent


def test_an_output_error_surfaces_after_the_notes_were_released() -> None:
    rig = Rig(OutputSpec.memory(fail_on=note_on(0, 61, 100)))
    rig.clock.start()
    rig.dispatcher.submit(
        [at(0, note_on(0, 60, 100)), at(0.5, note_on(0, 61, 100)), at(9, note_off(0, 60))]
    )
    wait_for(lambda: rig.dispatcher.error is not None)
    assert "port vanished" in str(rig.dispatcher.error)
    status = rig.dispatcher.status()
    assert status.failed
    assert status.sounding == frozenset()
    with pytest.raises(DispatcherError, match="port vanished"):
        rig.dispatcher.submit([at(10, TICK)])
    with pytest.raises(DispatcherError, match="port vanished"):
        rig.dispatcher.close()
    assert not rig.dispatcher.process_alive
    # 61 may or may not have sounded: it is released along with 60
    assert rig.sent_data() == [
        note_on(0, 60, 100),
        note_off(0, 60),
        note_off(0, 61),
        control_change(0, CC_ALL_NOTES_OFF, 0),
    ]


def test_the_child_records_a_midi_file(tmp_path: Path) -> None:
    path = tmp_path / "set.mid"
    rig = Rig(record=RecordSpec(path, title="take 1", bpm=BPM))
    rig.clock.start()
    rig.clock.set_tempo(BPM / 2, 2.0)
    rig.dispatcher.submit([at(0, note_on(0, 60, 100)), at(2.5, note_off(0, 60))])
    rig.wait_sent(2)
    rig.dispatcher.close()
    midi = mido.MidiFile(path)
    tempi = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempi == [mido.bpm2tempo(BPM), mido.bpm2tempo(BPM / 2)]
    assert recorded_messages(path)[-2:] == [note_off(0, 60), control_change(0, CC_ALL_NOTES_OFF, 0)]


async def test_open_process_dispatcher_closes_on_the_way_out() -> None:
    clock = MasterClock(BPM)
    clock.start()
    async with open_process_dispatcher(clock, OutputSpec.memory()) as dispatcher:
        dispatcher.submit([at(0, note_on(0, 60, 100)), at(100, note_off(0, 60))])
        while dispatcher.status().sent < 1:
            await trio.sleep(0.01)
    assert not dispatcher.process_alive
    assert dispatcher.sent[-1].data == control_change(0, CC_ALL_NOTES_OFF, 0)


def test_output_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown output kind"):
        OutputSpec("carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api"):
        OutputSpec("rtmidi")


# -- signals and the parent's death --------------------------------------------------------------


def test_the_child_ignores_sigint(rig: Rig) -> None:
    rig.clock.start()
    rig.dispatcher.submit([at(0, note_on(0, 60, 100))])
    rig.wait_sent(1)
    assert rig.dispatcher.pid is not None
    os.kill(rig.dispatcher.pid, signal.SIGINT)
    time.sleep(0.1)
    assert rig.dispatcher.status().sounding == {(0, 60)}


def test_sigterm_releases_records_and_ends_the_child(tmp_path: Path) -> None:
    path = tmp_path / "set.mid"
    rig = Rig(record=RecordSpec(path))
    rig.clock.start()
    rig.dispatcher.submit([at(0, note_on(0, 60, 100)), at(500, note_off(0, 60))])
    rig.wait_sent(1)
    assert rig.dispatcher.pid is not None
    os.kill(rig.dispatcher.pid, signal.SIGTERM)
    wait_for(lambda: not rig.dispatcher.process_alive)
    with pytest.raises(DispatcherError, match="stopped by SIGTERM"):
        rig.dispatcher.submit([at(600, TICK)])
    rig.dispatcher.close()  # a deliberate stop is no failure
    assert recorded_messages(path)[-2:] == [note_off(0, 60), control_change(0, CC_ALL_NOTES_OFF, 0)]


# A server that starts a sender process, lets a long note sound, and waits to be killed.
PARENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import rtmidi
    from livekomp.music.messages import ScheduledMessage, note_off, note_on
    from livekomp.clock.clock import MasterClock
    from livekomp.dispatch.sender import ProcessDispatcher
    from livekomp.outputs.midi import OutputSpec
    from livekomp.outputs.midifile import RecordSpec

    kind, record_path = sys.argv[1], sys.argv[2]
    spec = (
        OutputSpec.rtmidi(None, api=rtmidi.API_UNIX_JACK) if kind == "jack"
        else OutputSpec.memory()
    )
    clock = MasterClock(120)
    dispatcher = ProcessDispatcher(clock, spec, record=RecordSpec(record_path))
    dispatcher.start()
    print("ready", dispatcher.pid, dispatcher.port_label, flush=True)
    sys.stdin.readline()  # the test connects its receiver first
    clock.start()
    dispatcher.submit(
        [ScheduledMessage.at(0, note_on(0, 60, 100)), ScheduledMessage.at(9999, note_off(0, 60))]
    )
    while dispatcher.status().sent < 1:
        time.sleep(0.01)
    print("sounding", flush=True)
    time.sleep(600)
    """
)


class DoomedParent:
    """PARENT_SCRIPT in a subprocess; `kill()` is `kill -9`."""

    def __init__(self, kind: str, record_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PARENT_SCRIPT, kind, str(record_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split(maxsplit=2)
        assert ready[:1] == ["ready"], ready
        self.child_pid = int(ready[1])
        self.port_label = ready[2].strip()

    def play(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "sounding"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.kill()
        if not process_gone(self.child_pid):
            os.kill(self.child_pid, signal.SIGKILL)


def test_parent_death_releases_records_and_ends_the_child(tmp_path: Path) -> None:
    path = tmp_path / "set.mid"
    parent = DoomedParent("memory", path)
    try:
        parent.play()
        parent.kill()
        wait_for(lambda: process_gone(parent.child_pid))
    finally:
        parent.cleanup()
    assert recorded_messages(path) == [
        note_on(0, 60, 100),
        note_off(0, 60),
        control_change(0, CC_ALL_NOTES_OFF, 0),
    ]


# -- JACK: a real port and a real receiver -------------------------------------------------------


@pytest.fixture
def dump(tmp_path: Path, jack_server: None) -> Iterator[MidiDump]:
    receiver = MidiDump(tmp_path, f"lksender{os.getpid()}")
    yield receiver
    receiver.close()


def wait_for_events(dump: MidiDump, wanted: list[bytes], timeout_s: float = 10.0) -> None:
    wait_for(lambda: [data for _, data in dump.events()][: len(wanted)] == wanted, timeout_s)


@pytest.mark.jack
def test_a_virtual_jack_port_reaches_jack_midi_dump(dump: MidiDump) -> None:
    clock = MasterClock(BPM)
    dispatcher = ProcessDispatcher(clock, OutputSpec.rtmidi(None, api=rtmidi.API_UNIX_JACK))
    dispatcher.start()
    try:
        assert dispatcher.port_label is not None
        connect(dispatcher.port_label, dump.port)
        clock.start()
        dispatcher.submit(
            [
                at(0, note_on(0, 60, 100)),
                at(0.5, note_on(1, 64, 90)),
                at(1, note_off(0, 60)),
                at(1.5, note_off(1, 64)),
            ]
        )
        wait_for(lambda: dispatcher.status().sent == 4)
    finally:
        dispatcher.close(send_stop=True)
    wait_for_events(
        dump,
        [
            note_on(0, 60, 100),
            note_on(1, 64, 90),
            note_off(0, 60),
            note_off(1, 64),
            control_change(0, CC_ALL_NOTES_OFF, 0),
            control_change(1, CC_ALL_NOTES_OFF, 0),
            STOP,
        ],
    )


@pytest.mark.jack
def test_a_missing_port_fails_start_with_the_childs_message(jack_server: None) -> None:
    spec = OutputSpec.rtmidi("no-such-port-anywhere", api=rtmidi.API_UNIX_JACK)
    dispatcher = ProcessDispatcher(MasterClock(BPM), spec)
    with pytest.raises(MidiPortError, match="no MIDI output port matches 'no-such-port"):
        dispatcher.start()
    assert not dispatcher.process_alive


@pytest.mark.jack
def test_kill_9_of_the_server_leaves_no_hanging_note(dump: MidiDump, tmp_path: Path) -> None:
    parent = DoomedParent("jack", tmp_path / "set.mid")
    try:
        connect(parent.port_label, dump.port)
        parent.play()
        wait_for_events(dump, [note_on(0, 60, 100)])
        parent.kill()
        wait_for_events(
            dump,
            [note_on(0, 60, 100), note_off(0, 60), control_change(0, CC_ALL_NOTES_OFF, 0), STOP],
        )
        wait_for(lambda: process_gone(parent.child_pid))
    finally:
        parent.cleanup()


@pytest.mark.parametrize("nudge_ms", [40.0, -40.0])
def test_a_nudge_moves_every_send_by_its_amount(nudge_ms: float) -> None:
    """Latency compensation: each message goes `nudge` later (or earlier) than its beat's time,
    never before that moved time."""
    clock = MasterClock(BPM)
    dispatcher = ProcessDispatcher(clock, OutputSpec.memory(), nudge_s=nudge_ms * 1e-3)
    dispatcher.start()
    try:
        clock.start(time.perf_counter() + 0.3)
        dispatcher.submit([at(0.0, TICK), at(1.0, note_on(0, 60, 100)), at(2.0, note_off(0, 60))])
        wait_for(lambda: dispatcher.status().sent >= 3)
    finally:
        dispatcher.close()
    tempo_map = clock.tempo_map
    for message in dispatcher.sent:
        deadline_s = tempo_map.time_at(message.beat) + nudge_ms * 1e-3
        assert message.time_s >= deadline_s
        # Late by much less than the nudge, so it is the nudge that moved it (generous: a busy
        # machine may delay a send by a few ms, not by 40).
        assert message.time_s - deadline_s < abs(nudge_ms) * 1e-3 / 2
