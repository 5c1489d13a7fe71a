"""The sender process: sends scheduled MIDI at its time, with no other Python work beside it.

It opens its output itself (rtmidi objects cannot cross processes) from a picklable opener
(`wire.OutputOpener`, e.g. `livekomp.outputs.midi.OutputSpec`), optionally records a `.mid`
file (`wire.RecorderOpener`), keeps the pending messages in a `MessageHeap`, waits for the next
deadline or the next command with `select`, spins the last `spin_s` and sends, under SCHED_FIFO
at a low priority where permitted. It speaks the messages of `livekomp.dispatch.wire`.

Safety, whatever happens to the server: the child ignores SIGINT (Ctrl-C in a terminal reaches
the whole process group; the parent orchestrates the stop). On SIGTERM, SIGHUP or SIGQUIT, and on
end-of-file on the pipe (the parent died, even by `kill -9`), it releases every sounding note
(note-offs, then CC 123 on every channel used), sends MIDI Stop, writes its recording and exits.

It knows its output only by protocols: a port that can vanish and come back (`Replugs`) is
watched for hot-plug, and one that remembers what it was sent (`Remembers`, a memory port for
tests and benchmarks) hands that back at close.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import time
import traceback
from collections import deque
from enum import Enum
from multiprocessing.connection import Connection
from typing import Protocol, runtime_checkable

from livekomp.clock.clock import TempoMap, TempoSegment
from livekomp.dispatch.dispatcher import MessageHeap
from livekomp.dispatch.tracked import FanOut, MidiSink, TrackedOutput
from livekomp.dispatch.wire import (
    CancelFrom,
    Close,
    Closed,
    Entry,
    Failed,
    OutputOpener,
    Panic,
    PortChange,
    Ready,
    RecorderOpener,
    Segments,
    SenderStatus,
    SentMessage,
    StartError,
    Status,
    StatusReport,
    Submit,
    Tempo,
    TempoSink,
    Terminated,
)
from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    CLOCK_STOP,
    ScheduledMessage,
    SendOrder,
    control_change,
    note_off,
)

log = logging.getLogger(__name__)

# Hot-plug: how often the child looks for an existing output port, and how much time before
# the next send it needs to spare for that (a query takes ~20 µs, at worst ~0.3 ms).
HOTPLUG_CHECK_S = 0.5
HOTPLUG_SPARE_S = 0.003

# Signals after which the child releases everything and exits. SIGINT is ignored instead.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@runtime_checkable
class Replugs(Protocol):
    """An output that can vanish and come back (an existing port, not a virtual one)."""

    existing: bool  # False: a port of our own, which cannot vanish
    lost: bool
    port_label: str

    def present(self) -> bool: ...
    def reopen(self) -> None: ...
    def send(self, data: bytes, beat: float) -> None: ...


@runtime_checkable
class Remembers(Protocol):
    """An output that keeps what it was sent (a memory port)."""

    sent: list[SentMessage]


class _Exit(Enum):
    CLOSED = "closed by the parent"
    PARENT_GONE = "the parent process is gone (end of file on the pipe)"
    SIGNAL = "stopped by a signal"


def set_realtime(priority: int) -> tuple[bool, str]:
    """SCHED_FIFO at `priority` for this process; (done, why not)."""
    if priority <= 0:
        return False, "real-time priority not requested"
    if not hasattr(os, "sched_setscheduler"):
        return False, "no SCHED_FIFO on this OS"
    # RESET_ON_FORK: nothing this process might start inherits real-time scheduling.
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except OSError as err:
        return False, f"SCHED_FIFO not permitted ({err})"
    return True, f"SCHED_FIFO priority {priority}"


class Sender:
    """The send loop of the child: commands in, messages out at their times."""

    def __init__(
        self,
        conn: Connection,
        output: TrackedOutput,
        port: MidiSink,
        recorder: TempoSink | None,
        *,
        spin_s: float,
        wakeup_fd: int,
        stop_signals: list[int],
    ) -> None:
        self.conn = conn
        self.output = output
        self.memory = port if isinstance(port, Remembers) else None
        self.recorder = recorder
        self.spin_s = spin_s
        self.wakeup_fd = wakeup_fd
        self.stop_signals = stop_signals  # appended to by the signal handler
        self.queue = MessageHeap()
        self.tempo_map: TempoMap | None = None
        self.lateness_s: deque[float] = deque(maxlen=100_000)
        self.sent = 0
        self.failed = False
        self._last_beat = 0.0
        # Hot-plug: an existing port is checked for when the loop has time to spare.
        self.hotplug = port if isinstance(port, Replugs) and port.existing else None
        self._next_check_s = 0.0
        self._missed: tuple[frozenset[tuple[int, int]], frozenset[int]] | None = None

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> _Exit:
        now_s = time.perf_counter
        wait_on = [self.conn.fileno(), self.wakeup_fd]
        while True:
            if self.stop_signals:
                return _Exit.SIGNAL
            deadline_s = self._head_deadline_s()
            timeout_s = None if deadline_s is None else deadline_s - now_s() - self.spin_s
            check_due = self.hotplug is not None and now_s() >= self._next_check_s
            if check_due and (timeout_s is None or timeout_s > HOTPLUG_SPARE_S):
                self._check_port()
                continue
            if self.hotplug is not None and timeout_s is None:
                timeout_s = HOTPLUG_CHECK_S  # nothing to send: wake up to look for the port
            if timeout_s is None or timeout_s > 0:
                # select, not Connection.poll: poll(2) rounds its timeout to whole milliseconds,
                # select(2) sleeps to the microsecond (and SCHED_FIFO has no timer slack).
                readable, _, _ = select.select(wait_on, [], [], timeout_s)
                if self.wakeup_fd in readable:
                    os.read(self.wakeup_fd, 64)  # the handler has noted the signal
                if self.conn.fileno() in readable and (exit_ := self._handle_commands()):
                    return exit_
                continue
            assert deadline_s is not None
            while now_s() < deadline_s:
                pass
            self._send_due(now_s())

    def _head_deadline_s(self) -> float | None:
        head_beat = self.queue.head_beat()
        if head_beat is None or self.tempo_map is None:
            return None
        return self.tempo_map.time_at(head_beat)

    def _send_due(self, now_s: float) -> None:
        assert self.tempo_map is not None
        try:
            for deadline_s, message in self.queue.pop_due(self.tempo_map, now_s):
                self._last_beat = message.beat
                self.output.send(message.data, message.beat)
                # Measured right after the bytes left, like the thread dispatcher's stats.
                self.lateness_s.append(time.perf_counter() - deadline_s)
                self.sent += 1
        except Exception as err:
            self._fail(err)

    def _fail(self, err: Exception) -> None:
        """Release what is sounding, then tell the parent; stay to answer until closed."""
        self.failed = True
        self.queue.clear()
        self._release_or_log(send_stop=False)
        report = Failed(type(err).__name__, str(err), "".join(traceback.format_exception(err)))
        _tell(self.conn, report)

    def _check_port(self) -> None:
        """Hot-plug: a vanished port's sounding notes are released in the recording (the port
        drops sends meanwhile); when it is back it is reopened and sent the releases it missed.
        """
        assert self.hotplug is not None
        port = self.hotplug
        self._next_check_s = time.perf_counter() + HOTPLUG_CHECK_S
        present = port.present()
        try:
            if not present and not port.lost:
                port.lost = True
                self._missed = (self.output.sounding, self.output.channels_used)
                self.output.release_all(self.current_beat())  # reaches the recording only
                _tell(self.conn, PortChange("lost", port.port_label, len(self._missed[0])))
            elif present and port.lost:
                port.reopen()
                notes, channels = self._missed or (frozenset(), frozenset())
                self._missed = None
                for channel, pitch in sorted(notes):
                    port.send(note_off(channel, pitch), 0.0)
                for channel in sorted(channels):
                    port.send(control_change(channel, CC_ALL_NOTES_OFF, 0), 0.0)
                _tell(self.conn, PortChange("back", port.port_label, len(notes)))
        except Exception as err:
            self._fail(err)

    def current_beat(self) -> float:
        if self.tempo_map is None:
            return self._last_beat
        return self.tempo_map.beat_at(time.perf_counter())

    def _release(self, *, send_stop: bool) -> None:
        """Note-offs for every sounding note, CC 123 on every channel used, maybe MIDI Stop."""
        beat = self.current_beat()
        self.output.release_all(beat)
        if send_stop:
            self.output.send(bytes((CLOCK_STOP,)), beat)

    def _release_or_log(self, *, send_stop: bool) -> None:
        """`_release` on the way out, when there is no one left to raise to."""
        try:
            self._release(send_stop=send_stop)
        except Exception as err:
            log.error("releasing notes failed: %r", err)

    # -- commands ------------------------------------------------------------------------------

    def _handle_commands(self) -> _Exit | None:
        """Run every command waiting on the pipe; an exit reason when the loop must end."""
        while True:
            try:
                command = self.conn.recv()
            except (EOFError, OSError):
                return _Exit.PARENT_GONE
            match command:
                case Submit(entries):
                    self.submit(entries)
                case Tempo(segments):
                    self.set_tempo_map(segments)
                case CancelFrom(beat):
                    self.queue.cancel_from(beat)
                case Panic(keep_clock):
                    self.panic(keep_clock)
                case Status():
                    self.report_status()
                case Close(send_stop):
                    self.finish(send_stop=send_stop)
                    sent = None if self.memory is None else list(self.memory.sent)
                    _tell(self.conn, Closed(list(self.lateness_s), sent))
                    return _Exit.CLOSED
                case _:
                    raise TypeError(f"not a sender command: {command!r}")
            if not self.conn.poll(0):
                return None

    def submit(self, entries: list[Entry]) -> None:
        if not self.failed:
            self.queue.push(ScheduledMessage(b, SendOrder(o), d) for b, o, d in entries)

    def set_tempo_map(self, segments: Segments | None) -> None:
        if segments is None:
            # The clock stopped: remember where, so a release is stamped at a sensible beat.
            self._last_beat = self.current_beat()
            self.tempo_map = None
            return
        self.tempo_map = TempoMap(tuple(TempoSegment(*s) for s in segments))
        if self.recorder is not None:
            self.recorder.set_tempo_map(self.tempo_map)

    def panic(self, keep_clock: bool) -> None:
        self.queue.clear(keep_clock=keep_clock)
        if not self.failed:
            try:
                self._release(send_stop=False)
            except Exception as err:  # the port broke: a failure like any send's
                self._fail(err)

    def report_status(self) -> None:
        status = SenderStatus(
            time_s=time.perf_counter(),
            pending=len(self.queue),
            sent=self.sent,
            sounding=self.output.sounding,
            failed=self.failed,
        )
        self.conn.send(StatusReport(status))

    # -- the end -------------------------------------------------------------------------------

    def finish(self, *, send_stop: bool) -> None:
        """Drop what is pending, release every note, close the port and write the recording."""
        self.queue.clear()
        if not self.failed:
            self._release_or_log(send_stop=send_stop)
        try:
            self.output.close()
        except Exception as err:
            log.error("closing the output failed: %r", err)


def _tell(conn: Connection, message: tuple) -> None:
    """Send to the parent if it is still there (if not, the loop ends at the end-of-file)."""
    with contextlib.suppress(OSError):
        conn.send(message)


def child_main(
    conn: Connection,
    output: OutputOpener,
    record: RecorderOpener | None,
    spin_s: float,
    rt_priority: int,
) -> None:
    """The entry point of the sender process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(format="%(asctime)s %(levelname)-7s livekomp-sender: %(message)s")
    # Stop signals only set a flag; the wakeup fd interrupts the select. No exception is raised
    # at a random point, so a lock held mid-send can never deadlock the release.
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    stop_signals: list[int] = []  # a stop during start-up is honoured as soon as the loop runs
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: stop_signals.append(received))

    try:
        port, label = output.open()
    except Exception as err:
        conn.send(
            StartError("port" if isinstance(err, OSError) else "other", str(err) or repr(err))
        )
        return
    recorder = None
    sink: MidiSink = port
    if record is not None:
        recorder = record.open()
        sink = FanOut([port, recorder])
    sender = Sender(
        conn,
        TrackedOutput(sink),
        port,
        recorder,
        spin_s=spin_s,
        wakeup_fd=wakeup_r,
        stop_signals=stop_signals,
    )
    # After the port is open: threads the MIDI library started keep normal scheduling.
    realtime, note = set_realtime(rt_priority)
    # What was imported lives for good; a collection then never walks it mid-set.
    gc.collect()
    gc.freeze()
    conn.send(Ready(label, realtime, note, time.perf_counter()))

    exit_ = _Exit.PARENT_GONE
    try:
        exit_ = sender.run()
    finally:
        if exit_ is not _Exit.CLOSED:
            sender.finish(send_stop=True)
    if exit_ is _Exit.SIGNAL:
        _tell(conn, Terminated(stop_signals[0]))  # a deliberate stop, not a failure
