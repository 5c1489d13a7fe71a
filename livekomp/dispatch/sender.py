"""Sends scheduled MIDI from a process of its own, so that no Python work in the server can
delay it.

The thread `Dispatcher` is precise only while nothing else in the process wants the GIL: with a
composer generating in another thread, the send thread waits up to a switch interval (5 ms) for
it. `ProcessDispatcher` has the same interface, but its send loop runs in a child process
started with the multiprocessing *spawn* context (never fork a trio process that has threads).
The child opens the MIDI port itself (rtmidi objects cannot cross processes) from a picklable
`OutputSpec`, optionally records a `.mid` file (`RecordSpec`), keeps the pending messages in a
`MessageHeap`, waits for the next deadline or the next command with `select`, spins the last
`spin_s` and sends, under SCHED_FIFO at a low priority where permitted.

Parent and child talk over one duplex `multiprocessing.Pipe`. Commands are tuples, first the
name: ("submit", [(beat, order, data), …]), ("tempo", segments | None), ("cancel_from", beat),
("panic", keep_clock), ("status",), ("close", send_stop). The parent forwards every tempo map its
`MasterClock` publishes (None when the clock stops). Both processes read `time.perf_counter`,
which is system-wide (CLOCK_MONOTONIC on Linux, mach absolute time on macOS), so a tempo map's
seconds mean the same in both; `status()` lets a test prove it.

The child answers ("ready", port_label, realtime, note, child_perf_counter_s) or ("error", kind,
message) at start-up,
("failed", type, message, traceback) when sending failed (it released the notes first, then keeps
answering commands until closed), ("status", SenderStatus), ("closed", lateness, sent) and
("terminated",) when a signal stopped it.

Safety, whatever happens to the server: the child ignores SIGINT (Ctrl-C in a terminal reaches
the whole process group; the parent orchestrates the stop). On SIGTERM, SIGHUP or SIGQUIT, and on
end-of-file on the pipe (the parent died, even by `kill -9`), it releases every sounding note
(note-offs, then CC 123 on every channel used), sends MIDI Stop, writes its recording and exits.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import multiprocessing
import os
import select
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import trio

from livekomp.clock.clock import MasterClock, TempoMap, TempoSegment
from livekomp.dispatch.dispatcher import DispatcherError, LatenessStats, MessageHeap
from livekomp.dispatch.tracked import MidiSink, TrackedOutput
from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    CLOCK_STOP,
    ScheduledMessage,
    SendOrder,
    control_change,
    note_off,
)
from livekomp.outputs.midi import FanOut, MemoryOutput, MidiPortError, RtMidiOutput, SentMessage
from livekomp.outputs.midifile import MidiFileRecorder

log = logging.getLogger(__name__)

# Hot-plug: how often the child looks for an existing output port, and how much time before
# the next send it needs to spare for that (a query takes ~20 µs, at worst ~0.3 ms).
HOTPLUG_CHECK_S = 0.5
HOTPLUG_SPARE_S = 0.003

# Signals after which the child releases everything and exits. SIGINT is ignored instead.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

_Segments = tuple[tuple[float, float, float], ...]  # (start_beat, start_s, bpm) per segment


# -- what the child opens ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Which MIDI output the sender process opens (the output itself cannot cross processes).

    `kind="rtmidi"`: a python-rtmidi port on `api`, virtual when `port_name` is None (see
    `RtMidiOutput`). `kind="memory"`: a `MemoryOutput` whose messages come back to the parent at
    close (tests, benchmarks); with `fail_on`, sending that message raises, like a port that
    vanished mid-set.
    """

    kind: Literal["rtmidi", "memory"]
    port_name: str | None = None
    api: int | None = None
    fail_on: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in _OUTPUT_OPENERS:
            raise ValueError(
                f"unknown output kind {self.kind!r}; choose {', '.join(_OUTPUT_OPENERS)}"
            )
        if self.kind == "rtmidi" and self.api is None:
            raise ValueError("an rtmidi output needs its api (see livekomp.midiports.choose_api)")

    @classmethod
    def rtmidi(cls, port_name: str | None, *, api: int) -> OutputSpec:
        return cls("rtmidi", port_name=port_name, api=api)

    @classmethod
    def memory(cls, *, fail_on: bytes | None = None) -> OutputSpec:
        return cls("memory", fail_on=fail_on)


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """A `.mid` file the sender process records everything it sends into (see MidiFileRecorder).

    It is written when the child ends, whichever way: close, a stop signal, or the parent's death.
    """

    path: str | Path
    title: str = "livekomp"
    beats_per_bar: int = 4
    bpm: float = 120.0


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """What the sender process reports when asked (`ProcessDispatcher.status`)."""

    time_s: float  # its time.perf_counter() as it answered
    pending: int  # messages waiting for their time
    sent: int  # scheduled messages sent so far (releases not counted)
    sounding: frozenset[tuple[int, int]]  # (channel, pitch) of every note sounding
    failed: bool


class _VanishingOutput(MemoryOutput):
    """A memory port that raises on one message, like a port that vanished mid-set."""

    def __init__(self, fail_on: bytes) -> None:
        super().__init__(now_s=time.perf_counter)
        self.fail_on = fail_on

    def send(self, data: bytes, beat: float) -> None:
        if data == self.fail_on:
            raise MidiPortError("port vanished")
        super().send(data, beat)


def _open_rtmidi(spec: OutputSpec) -> tuple[MidiSink, str]:
    assert spec.api is not None  # checked in OutputSpec
    port = RtMidiOutput(spec.port_name, api=spec.api)
    return port, port.port_label


def _open_memory(spec: OutputSpec) -> tuple[MidiSink, str]:
    if spec.fail_on is not None:
        return _VanishingOutput(spec.fail_on), "memory (fails)"
    return MemoryOutput(now_s=time.perf_counter), "memory"


_OUTPUT_OPENERS: dict[str, Callable[[OutputSpec], tuple[MidiSink, str]]] = {
    "rtmidi": _open_rtmidi,
    "memory": _open_memory,
}


# -- the child process -------------------------------------------------------------------------


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


class _Sender:
    """The send loop of the child: commands in, messages out at their times."""

    def __init__(
        self,
        conn: Connection,
        output: TrackedOutput,
        port: MidiSink,
        recorder: MidiFileRecorder | None,
        *,
        spin_s: float,
        wakeup_fd: int,
        stop_signals: list[int],
    ) -> None:
        self.conn = conn
        self.output = output
        self.memory = port if isinstance(port, MemoryOutput) else None
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
        self.hotplug = port if isinstance(port, RtMidiOutput) and port.existing else None
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
        report = ("failed", type(err).__name__, str(err), "".join(traceback.format_exception(err)))
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
                _tell(self.conn, ("port", "lost", port.port_label, len(self._missed[0])))
            elif present and port.lost:
                port.reopen()
                notes, channels = self._missed or (frozenset(), frozenset())
                self._missed = None
                for channel, pitch in sorted(notes):
                    port.send(note_off(channel, pitch), 0.0)
                for channel in sorted(channels):
                    port.send(control_change(channel, CC_ALL_NOTES_OFF, 0), 0.0)
                _tell(self.conn, ("port", "back", port.port_label, len(notes)))
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
                name, *args = self.conn.recv()
            except (EOFError, OSError):
                return _Exit.PARENT_GONE
            if name == "close":
                self.finish(send_stop=args[0])
                sent = None if self.memory is None else self.memory.sent
                _tell(self.conn, ("closed", list(self.lateness_s), sent))
                return _Exit.CLOSED
            _COMMANDS[name](self, *args)
            if not self.conn.poll(0):
                return None

    def submit(self, entries: list[tuple[float, int, bytes]]) -> None:
        if not self.failed:
            self.queue.push(ScheduledMessage(b, SendOrder(o), d) for b, o, d in entries)

    def set_tempo_map(self, segments: _Segments | None) -> None:
        if segments is None:
            # The clock stopped: remember where, so a release is stamped at a sensible beat.
            self._last_beat = self.current_beat()
            self.tempo_map = None
            return
        self.tempo_map = TempoMap(tuple(TempoSegment(*s) for s in segments))
        if self.recorder is not None:
            self.recorder.set_tempo_map(self.tempo_map)

    def cancel_from(self, beat: float) -> None:
        self.queue.cancel_from(beat)

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
        self.conn.send(("status", status))

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


_COMMANDS: dict[str, Callable[..., None]] = {
    "submit": _Sender.submit,
    "tempo": _Sender.set_tempo_map,
    "cancel_from": _Sender.cancel_from,
    "panic": _Sender.panic,
    "status": _Sender.report_status,
}


def _child_main(
    conn: Connection,
    output_spec: OutputSpec,
    record: RecordSpec | None,
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
        port, label = _OUTPUT_OPENERS[output_spec.kind](output_spec)
    except Exception as err:
        kind = "port" if isinstance(err, OSError) else "other"
        conn.send(("error", kind, str(err) or repr(err)))
        return
    recorder = None
    sink: MidiSink = port
    if record is not None:
        recorder = MidiFileRecorder(
            record.path, title=record.title, beats_per_bar=record.beats_per_bar, bpm=record.bpm
        )
        sink = FanOut([port, recorder])
    sender = _Sender(
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
    conn.send(("ready", label, realtime, note, time.perf_counter()))

    exit_ = _Exit.PARENT_GONE
    try:
        exit_ = sender.run()
    finally:
        if exit_ is not _Exit.CLOSED:
            sender.finish(send_stop=True)
    if exit_ is _Exit.SIGNAL:
        _tell(conn, ("terminated", stop_signals[0]))  # a deliberate stop, not a failure


# -- the parent's side -------------------------------------------------------------------------


class RemoteSenderError(RuntimeError):
    """An error raised in the sender process, with its traceback there as text."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class ProcessDispatcher:
    """The live sender in a child process: `Dispatcher`'s interface, immune to the GIL.

    `start()` spawns the child and waits until its port is open (a few hundred ms: call it off
    the trio thread); it raises `MidiPortError` with the child's message when the port cannot be
    opened. A sending error in the child (the port vanished) is raised as `DispatcherError` by
    the next `submit`, `cancel_from` or `close`, after the child released the notes. `nudge_s`
    shifts every send by that much (latency compensation: MIDI lands with the DAW's audio).
    `panic` and `cancel_from` take effect in the child before anything submitted after them.
    Thread-safe: one lock serializes the pipe.

    After `close()`, `stats` holds every message's lateness as the child measured it (right after
    the send) and `sent` what a memory output received.
    """

    def __init__(
        self,
        clock: MasterClock,
        output: OutputSpec,
        *,
        record: RecordSpec | None = None,
        spin_s: float = 200e-6,
        rt_priority: int = 3,
        start_timeout_s: float = 30.0,
        nudge_s: float = 0.0,
    ) -> None:
        self.clock = clock
        self.nudge_s = nudge_s
        self.output = output
        self.record = record
        self.spin_s = spin_s
        self.rt_priority = rt_priority
        self.start_timeout_s = start_timeout_s
        self.port_label: str | None = None
        self.realtime = False
        self.startup_s = math.nan  # from start() to the child's "ready"
        self.stats = LatenessStats()
        self.sent: list[SentMessage] = []
        self._lock = threading.Lock()
        self._conn: Connection | None = None  # set once the child is ready
        self._process: multiprocessing.process.BaseProcess | None = None
        self._error: BaseException | None = None
        self._stopped_by: int | None = None  # the signal that stopped the child
        self._closed = False
        clock.add_listener(self._on_clock_change)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the sender process and wait until its output is open."""
        if self._process is not None:
            raise RuntimeError("ProcessDispatcher.start called twice")
        started_s = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_child_main,
            args=(child_conn, self.output, self.record, self.spin_s, self.rt_priority),
            name="livekomp-sender",
            daemon=True,  # multiprocessing's exit handler SIGTERMs it: notes are released
        )
        self._process.start()
        # Only the child may hold its end: then the parent's death is end-of-file there.
        child_conn.close()
        try:
            reply = self._receive(conn, "ready", "error", timeout_s=self.start_timeout_s)
        except DispatcherError:
            self._abandon(conn)
            raise
        if reply[0] == "error":
            _, kind, message = reply
            self._abandon(conn)
            raise (MidiPortError if kind == "port" else DispatcherError)(message)
        _, self.port_label, self.realtime, note, child_now_s = reply
        ready_s = time.perf_counter()
        if not started_s <= child_now_s <= ready_s:
            # Deadlines cross the pipe as perf_counter seconds: they must mean the same there.
            self._abandon(conn)
            raise DispatcherError(
                f"the sender process's perf_counter ({child_now_s:.6f}) is not this process's "
                f"({started_s:.6f}..{ready_s:.6f}): no shared time base on this platform"
            )
        self.startup_s = ready_s - started_s
        if self.realtime:
            log.debug("sender process %d: %s", self._process.pid, note)
        else:
            log.warning("sender process: %s; normal scheduling", note)
        log.debug("sender process ready in %.0f ms", self.startup_s * 1e3)
        with self._lock:
            self._conn = conn
        self._on_clock_change()  # the clock may be running already

    def close(self, timeout_s: float = 5.0, *, send_stop: bool = False) -> None:
        """Release every note (with `send_stop`, then send MIDI Stop), end the child, collect its
        stats; raises the sender's error if it failed. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._close_child(timeout_s, send_stop)
            finally:
                self._reap(timeout_s)
                if self._conn is not None:
                    self._conn.close()
        self._raise_if_failed()

    def _close_child(self, timeout_s: float, send_stop: bool) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.send(("close", send_stop))
                _, lateness_s, sent = self._receive(conn, "closed", timeout_s=timeout_s)
            except (OSError, DispatcherError) as err:
                # A signal to the whole process group (systemd's stop, `kill -TERM -PGID`) may
                # have ended the child first: its "terminated" is still in the pipe.
                self._read_inbox(conn)
                # Stopped by a signal it released everything itself; else it is an error.
                if self._stopped_by is None and self._error is None:
                    self._error = RemoteSenderError(f"closing the sender process failed: {err}")
                return
        for value in lateness_s:
            self.stats.record(value)
        self.sent = sent or []

    def _reap(self, timeout_s: float) -> None:
        """Join the child; one that does not end gets SIGTERM (it still releases), then SIGKILL."""
        process = self._process
        if process is None:
            return
        process.join(timeout_s)
        if process.exitcode is None:
            log.error("sender process did not stop within %.1f s; terminating it", timeout_s)
            process.terminate()
            process.join(2.0)
        if process.exitcode is None:
            process.kill()
            process.join()

    def _abandon(self, conn: Connection) -> None:
        self._closed = True
        self._reap(2.0)
        conn.close()

    # -- the performer's interface -----------------------------------------------------------

    def submit(self, messages: Iterable[ScheduledMessage]) -> None:
        """Queue messages for sending; returns at once."""
        entries = [(m.beat, int(m.order), m.data) for m in messages]
        self._send_command("submit", entries)

    def cancel_from(self, beat: float) -> None:
        """Drop pending messages at or after `beat`, except note-offs (see `Dispatcher`)."""
        self._send_command("cancel_from", beat)

    def panic(self, *, keep_clock: bool = False) -> None:
        """Drop everything pending and release every sounding note (+ CC 123 on used channels).

        With `keep_clock`, pending clock ticks stay queued. The child does it before anything
        submitted later. Returns at once and never raises: cleanup paths call it. (If the child
        is gone, it released the notes when it went.)
        """
        try:
            self._send_command("panic", keep_clock)
        except DispatcherError as err:
            log.debug("panic not sent: %s", err)

    def status(self, timeout_s: float = 5.0) -> SenderStatus:
        """Ask the child how it stands: a round trip, for tests and diagnostics. Works after a
        sending failure too (`failed` says so)."""
        with self._lock:
            conn = self._usable_conn(raise_failure=False)
            try:
                conn.send(("status",))
            except OSError as err:
                raise self._gone(err) from err
            _, status = self._receive(conn, "status", timeout_s=timeout_s)
        return status

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the sender, if any (reported by the child, or its exit)."""
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                self._read_inbox(self._conn)
        return self._error

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def process_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def summary(self) -> dict[str, float]:
        """p50, p99, max lateness (ms) and count as measured in the child; complete after close."""
        return self.stats.summary()

    # -- the pipe ----------------------------------------------------------------------------

    def _on_clock_change(self) -> None:
        """Forward the clock's tempo map (None: stopped). Never raises: the clock calls this."""
        with self._lock:  # read and sent under one lock: maps reach the child in order
            if self._conn is None or self._closed:
                return
            try:
                # The nudge moves the whole map, so every message (and clock tick) moves.
                segments = tuple(
                    (s.start_beat, s.start_s + self.nudge_s, s.bpm)
                    for s in self.clock.tempo_map.segments
                )
            except RuntimeError:  # the clock is stopped
                segments = None
            try:
                self._usable_conn().send(("tempo", segments))
            except (OSError, DispatcherError) as err:
                log.debug("tempo map not forwarded: %s", err)

    def _send_command(self, *command: Any) -> None:
        with self._lock:
            conn = self._usable_conn()
            try:
                conn.send(command)
            except OSError as err:
                raise self._gone(err) from err

    def _usable_conn(self, *, raise_failure: bool = True) -> Connection:
        """The pipe, or the reason no command can go through it. Caller holds the lock."""
        if self._conn is not None and not self._conn.closed:
            self._read_inbox(self._conn)
        if raise_failure:
            self._raise_if_failed()
        if self._closed:
            raise DispatcherError("the process dispatcher is closed")
        if self._conn is None:
            raise DispatcherError("the process dispatcher was not started")
        if self._stopped_by is not None:
            name = signal.Signals(self._stopped_by).name
            raise DispatcherError(f"the sender process was stopped by {name}")
        return self._conn

    def _read_inbox(self, conn: Connection) -> None:
        """Take in what the child said unasked (a failure, its end). Caller holds the lock."""
        try:
            while conn.poll(0):
                self._take(conn.recv())
        except (EOFError, OSError) as err:
            if self._stopped_by is None and self._error is None:
                self._error = self._gone(err).__cause__

    def _receive(self, conn: Connection, *wanted: str, timeout_s: float) -> tuple:
        """The next reply named one of `wanted`, taking in anything said meanwhile."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline_s - time.monotonic()
            try:
                if remaining_s <= 0 or not conn.poll(remaining_s):
                    raise DispatcherError(
                        f"no {'/'.join(wanted)} from the sender process in {timeout_s:g} s"
                    )
                reply = conn.recv()
            except (EOFError, OSError) as err:
                raise self._gone(err) from err
            if reply[0] in wanted:
                return reply
            self._take(reply)

    def _take(self, reply: tuple) -> None:
        kind, *details = reply
        if kind == "failed":
            type_name, message, remote_traceback = details
            self._error = RemoteSenderError(f"{type_name}: {message}", remote_traceback)
            log.error("the sender process failed; it released all notes:\n%s", remote_traceback)
        elif kind == "port":
            state, label, notes = details
            if state == "lost":
                log.warning(
                    "MIDI output %s is gone: %d sounding notes released in the recording; it is "
                    "reopened when it comes back",
                    label,
                    notes,
                )
            else:
                log.warning(
                    "MIDI output %s is back: reopened, the %d notes it missed released",
                    label,
                    notes,
                )
        elif kind == "terminated":
            self._stopped_by = details[0]
            name = signal.Signals(details[0]).name
            log.info("the sender process was stopped by %s; it released all notes", name)
        else:
            raise DispatcherError(f"unexpected reply from the sender process: {kind!r}")

    def _gone(self, err: BaseException) -> DispatcherError:
        """The error for a pipe that broke: the child exited (or is exiting)."""
        code = None
        if self._process is not None:
            self._process.join(0.5)
            code = self._process.exitcode
        cause = RemoteSenderError(f"the sender process is gone (exit code {code}): {err!r}")
        error = DispatcherError(str(cause))
        error.__cause__ = cause
        return error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise DispatcherError(f"the sender process failed: {self._error}") from self._error


@asynccontextmanager
async def open_process_dispatcher(
    clock: MasterClock,
    output: OutputSpec,
    *,
    record: RecordSpec | None = None,
    spin_s: float = 200e-6,
    rt_priority: int = 3,
    nudge_s: float = 0.0,
) -> AsyncIterator[ProcessDispatcher]:
    """A started `ProcessDispatcher` (spawned off the trio thread), always closed on the way out."""
    dispatcher = ProcessDispatcher(
        clock, output, record=record, spin_s=spin_s, rt_priority=rt_priority, nudge_s=nudge_s
    )
    await trio.to_thread.run_sync(dispatcher.start)
    try:
        yield dispatcher
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(dispatcher.close)
