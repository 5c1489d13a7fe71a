"""The live dispatcher on its real thread (short real delays), and the virtual one in trio time.

Live tests assert order and "never early", never how late: machines are noisy.
"""

import threading
import time
from collections.abc import Iterator

import pytest
import trio

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.dispatcher import (
    Dispatcher,
    DispatcherError,
    VirtualDispatcher,
    open_dispatcher,
    open_virtual_dispatcher,
)
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.dispatch.wire import SentMessage
from livekomp.measure import summarize_ms
from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    control_change,
    note_off,
    note_on,
)
from livekomp.outputs.midi import MemoryOutput
from tests.dispatch.common import BPM, ORDERING_CASE, ORDERING_EXPECTED, TICK, at, wait_for


class Live:
    def __init__(self, output: MemoryOutput | None = None) -> None:
        self.clock = MasterClock(BPM)
        self.sink = output or MemoryOutput()
        self.output = TrackedOutput(self.sink)
        self.dispatcher = Dispatcher(self.clock, self.output)

    def assert_never_early(self) -> None:
        tempo_map = self.clock.tempo_map
        for message in self.sink.sent:
            assert message.time_s >= tempo_map.time_at(message.beat)


@pytest.fixture
def live() -> Iterator[Live]:
    rig = Live()
    rig.dispatcher.start()
    yield rig
    rig.dispatcher.close()
    assert not rig.dispatcher.thread_alive


def test_messages_arrive_in_beat_and_send_order(live: Live) -> None:
    messages = ORDERING_CASE
    live.clock.start()
    live.dispatcher.submit(reversed(messages))
    wait_for(lambda: len(live.sink.sent) == len(messages))

    assert live.sink.data == ORDERING_EXPECTED
    live.assert_never_early()
    assert live.dispatcher.stats.summary()["count"] == len(messages)
    assert min(live.dispatcher.stats.lateness_s) >= 0


def test_an_earlier_submit_wakes_the_sender(live: Live) -> None:
    live.clock.start()
    live.dispatcher.submit([at(40, note_on(0, 70, 100))])  # six seconds away
    live.dispatcher.submit([at(0.5, note_on(0, 60, 100))])
    wait_for(lambda: len(live.sink.sent) == 1)
    assert live.sink.data == [note_on(0, 60, 100)]
    assert live.dispatcher.pending == 1


def test_a_tempo_change_moves_pending_messages(live: Live) -> None:
    live.clock.start()
    live.dispatcher.submit([at(0.5, TICK), at(3, note_on(0, 60, 100))])
    wait_for(lambda: len(live.sink.sent) == 1)
    old_deadline_s = live.clock.time_at(3)
    assert live.clock.set_tempo(BPM / 2) == 1.0
    new_deadline_s = live.clock.time_at(3)
    assert new_deadline_s > old_deadline_s + 0.2
    wait_for(lambda: len(live.sink.sent) == 2)
    assert live.sink.sent[1].time_s >= new_deadline_s


def test_it_waits_while_the_clock_is_stopped(live: Live) -> None:
    live.dispatcher.submit([at(0, note_on(0, 60, 100))])
    # Beat 0 falls 0.3 s after the start: a message sent while the clock was stopped would
    # carry an earlier time, however late it went.
    start_s = live.clock.now_s() + 0.3
    live.clock.start(start_s)
    wait_for(lambda: len(live.sink.sent) == 1)
    assert live.sink.sent[0].time_s >= start_s


def test_panic_releases_sounding_notes_and_drops_pending(live: Live) -> None:
    live.clock.start()
    live.dispatcher.submit(
        [
            at(0, note_on(0, 60, 100)),
            at(0, note_on(3, 64, 100)),
            at(0, control_change(5, 1, 10)),
            at(30, note_off(0, 60)),
            at(30, note_off(3, 64)),
            at(31, note_on(9, 36, 100)),
        ]
    )
    wait_for(lambda: len(live.sink.sent) == 3)
    live.dispatcher.panic()

    assert live.dispatcher.pending == 0
    assert live.output.sounding == frozenset()
    released = live.sink.data[3:]
    assert released == [
        note_off(0, 60),
        note_off(3, 64),
        control_change(0, CC_ALL_NOTES_OFF, 0),
        control_change(3, CC_ALL_NOTES_OFF, 0),
        control_change(5, CC_ALL_NOTES_OFF, 0),
    ]


def test_cancel_from_keeps_note_offs_of_sounding_notes(live: Live) -> None:
    live.clock.start()
    live.dispatcher.submit([at(0.25, note_on(0, 60, 100))])
    wait_for(lambda: len(live.sink.sent) == 1)
    live.dispatcher.submit(
        [
            at(4, note_on(0, 62, 100)),
            at(5, control_change(0, 1, 64)),
            at(6, note_off(0, 62)),
            at(7, note_off(0, 60)),
        ]
    )
    live.dispatcher.cancel_from(3)
    assert live.dispatcher.pending == 2  # the two note-offs
    wait_for(lambda: live.dispatcher.pending == 0)
    # the note-off for 62, whose note-on was cancelled, is absorbed by the tracked output
    assert live.sink.data == [note_on(0, 60, 100), note_off(0, 60)]


def test_close_panics_and_joins() -> None:
    rig = Live()
    rig.dispatcher.start()
    rig.clock.start()
    rig.dispatcher.submit([at(0, note_on(2, 50, 100)), at(50, note_off(2, 50))])
    wait_for(lambda: len(rig.sink.sent) == 1)
    rig.dispatcher.close()
    assert not rig.dispatcher.thread_alive
    assert rig.sink.data[1:] == [note_off(2, 50), control_change(2, CC_ALL_NOTES_OFF, 0)]
    with pytest.raises(DispatcherError, match="closed"):
        rig.dispatcher.submit([at(60, TICK)])
    rig.dispatcher.close()  # idempotent


class BrokenPort(MemoryOutput):
    """Fails on one message, like a port that vanished mid-set."""

    def __init__(self, fail_on: bytes) -> None:
        super().__init__()
        self.fail_on = fail_on

    def send(self, data: bytes, beat: float) -> None:
        if data == self.fail_on:
            raise OSError("port vanished")
        super().send(data, beat)


def test_an_output_error_is_surfaced_and_notes_released() -> None:
    rig = Live(BrokenPort(fail_on=note_on(0, 61, 100)))
    errors: list[BaseException] = []
    rig.dispatcher.on_error = errors.append
    rig.dispatcher.start()
    rig.clock.start()
    rig.dispatcher.submit(
        [at(0, note_on(0, 60, 100)), at(0.5, note_on(0, 61, 100)), at(9, note_off(0, 60))]
    )
    wait_for(lambda: rig.dispatcher.error is not None)
    wait_for(lambda: bool(errors))
    assert isinstance(errors[0], OSError)
    assert not rig.dispatcher.thread_alive
    # 61 may or may not have sounded: it is released along with 60
    assert rig.sink.data == [
        note_on(0, 60, 100),
        note_off(0, 60),
        note_off(0, 61),
        control_change(0, CC_ALL_NOTES_OFF, 0),
    ]
    with pytest.raises(DispatcherError, match="port vanished"):
        rig.dispatcher.submit([at(10, TICK)])
    with pytest.raises(DispatcherError):
        rig.dispatcher.close()


def test_panic_from_another_thread_while_sending(live: Live) -> None:
    live.clock.start()
    messages = [at(i / 64, note_on(i % 16, 40 + i % 50, 100)) for i in range(400)]
    live.dispatcher.submit(messages)
    wait_for(lambda: len(live.sink.sent) > 10)
    panicker = threading.Thread(target=live.dispatcher.panic)
    panicker.start()
    panicker.join()
    time.sleep(0.05)
    assert live.output.sounding == frozenset()
    assert live.dispatcher.pending == 0


async def test_open_dispatcher_closes_on_the_way_out() -> None:
    clock = MasterClock(BPM)
    sink = MemoryOutput()
    clock.start()
    async with open_dispatcher(clock, TrackedOutput(sink)) as dispatcher:
        dispatcher.submit([at(0, note_on(0, 60, 100)), at(100, note_off(0, 60))])
        while not sink.sent:
            await trio.sleep(0.01)
    assert not dispatcher.thread_alive
    assert sink.data[-1] == control_change(0, CC_ALL_NOTES_OFF, 0)


def test_summary_in_ms() -> None:
    summary = summarize_ms([0.001] * 99 + [0.005])
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(1.0)
    assert summary["max_ms"] == pytest.approx(5.0)
    assert summarize_ms([])["count"] == 0


# -- virtual time ----------------------------------------------------------------------------


def virtual_rig() -> tuple[MasterClock, MemoryOutput, TrackedOutput]:
    clock = MasterClock(120, now_s=trio.current_time)
    sink = MemoryOutput(now_s=trio.current_time)
    return clock, sink, TrackedOutput(sink)


async def play_virtual() -> list[SentMessage]:
    clock, sink, output = virtual_rig()
    async with open_virtual_dispatcher(clock, output) as dispatcher:
        clock.start()
        start_s = trio.current_time()
        dispatcher.submit(
            [
                at(3.25, note_off(0, 60)),
                at(0, note_on(0, 60, 100)),
                at(0.5, TICK),
                at(1, note_on(1, 62, 90)),
                at(2, note_off(1, 62)),
            ]
        )
        await trio.sleep(10)
    return [m._replace(time_s=m.time_s - start_s) for m in sink.sent]


async def test_virtual_dispatcher_sends_at_exact_virtual_times(
    autojump_clock: trio.abc.Clock,
) -> None:
    sent = await play_virtual()
    assert [(m.beat, m.data) for m in sent] == [
        (0, note_on(0, 60, 100)),
        (0.5, TICK),
        (1, note_on(1, 62, 90)),
        (2, note_off(1, 62)),
        (3.25, note_off(0, 60)),
        (20, control_change(0, CC_ALL_NOTES_OFF, 0)),  # closing panics at the current beat
        (20, control_change(1, CC_ALL_NOTES_OFF, 0)),
    ]
    times_s = [m.time_s for m in sent]
    assert times_s == pytest.approx([0, 0.25, 0.5, 1.0, 1.625, 10, 10], abs=1e-9)
    assert sent == await play_virtual()  # deterministic


async def test_virtual_dispatcher_follows_tempo_changes(autojump_clock: trio.abc.Clock) -> None:
    clock, sink, output = virtual_rig()
    async with open_virtual_dispatcher(clock, output) as dispatcher:
        clock.start()
        start_s = trio.current_time()
        dispatcher.submit([at(4, note_on(0, 60, 100))])
        await clock.sleep_until_beat(1.5)
        assert clock.set_tempo(60) == 2.0
        await trio.sleep(10)
    assert sink.sent[0].time_s - start_s == pytest.approx(3.0, abs=1e-9)


async def test_virtual_dispatcher_cancel_and_panic(autojump_clock: trio.abc.Clock) -> None:
    clock, sink, output = virtual_rig()
    dispatcher = VirtualDispatcher(clock, output)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        clock.start()
        dispatcher.submit(
            [at(0, note_on(0, 60, 100)), at(2, note_on(0, 62, 100)), at(3, note_off(0, 60))]
        )
        dispatcher.cancel_from(1)
        await clock.sleep_until_beat(2.5)
        assert sink.data == [note_on(0, 60, 100)]
        dispatcher.panic()
        assert dispatcher.pending == 0
        dispatcher.close()  # panics again: All Notes Off once more
    assert sink.data == [
        note_on(0, 60, 100),
        note_off(0, 60),
        control_change(0, CC_ALL_NOTES_OFF, 0),
        control_change(0, CC_ALL_NOTES_OFF, 0),
    ]


async def test_virtual_dispatcher_raises_output_errors(autojump_clock: trio.abc.Clock) -> None:
    clock = MasterClock(120, now_s=trio.current_time)
    sink = BrokenPort(fail_on=note_on(0, 61, 100))
    dispatcher = VirtualDispatcher(clock, TrackedOutput(sink))
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="vanished"), flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.serve)
            clock.start()
            dispatcher.submit([at(0, note_on(0, 60, 100)), at(1, note_on(0, 61, 100))])
            await trio.sleep(10)
    assert note_off(0, 60) in sink.data
    with pytest.raises(DispatcherError):
        dispatcher.submit([at(5, TICK)])
