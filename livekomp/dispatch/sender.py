"""Sends scheduled MIDI from a process of its own, so that no Python work in the server can
delay it: the parent's side.

The thread `Dispatcher` is precise only while nothing else in the process wants the GIL: with a
composer generating in another thread, the send thread waits up to a switch interval (5 ms) for
it. `ProcessDispatcher` has the same interface, but its send loop (`livekomp.dispatch.child`)
runs in a child process started with the multiprocessing *spawn* context (never fork a trio
process that has threads). The two speak the messages of `livekomp.dispatch.wire` over one
pipe.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection

import trio

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.child import child_main
from livekomp.dispatch.dispatcher import DispatcherError, LatenessStats
from livekomp.dispatch.wire import (
    CancelFrom,
    Close,
    Closed,
    Command,
    Failed,
    OutputOpener,
    Panic,
    PortChange,
    Ready,
    RecorderOpener,
    Reply,
    SenderStatus,
    SentMessage,
    StartError,
    Status,
    StatusReport,
    Submit,
    Tempo,
    Terminated,
)
from livekomp.midiports import MidiPortError
from livekomp.music.messages import ScheduledMessage

log = logging.getLogger(__name__)


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
        output: OutputOpener,
        *,
        record: RecorderOpener | None = None,
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
            target=child_main,
            args=(child_conn, self.output, self.record, self.spin_s, self.rt_priority),
            name="livekomp-sender",
            daemon=True,  # multiprocessing's exit handler SIGTERMs it: notes are released
        )
        self._process.start()
        # Only the child may hold its end: then the parent's death is end-of-file there.
        child_conn.close()
        try:
            reply = self._receive(conn, Ready, StartError, timeout_s=self.start_timeout_s)
        except DispatcherError:
            self._abandon(conn)
            raise
        if isinstance(reply, StartError):
            self._abandon(conn)
            raise (MidiPortError if reply.kind == "port" else DispatcherError)(reply.message)
        assert isinstance(reply, Ready)
        self.port_label, self.realtime = reply.port_label, reply.realtime
        note, child_now_s = reply.note, reply.child_perf_counter_s
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
                conn.send(Close(send_stop))
                closed = self._receive(conn, Closed, timeout_s=timeout_s)
            except (OSError, DispatcherError) as err:
                # A signal to the whole process group (systemd's stop, `kill -TERM -PGID`) may
                # have ended the child first: its "terminated" is still in the pipe.
                self._read_inbox(conn)
                # Stopped by a signal it released everything itself; else it is an error.
                if self._stopped_by is None and self._error is None:
                    self._error = RemoteSenderError(f"closing the sender process failed: {err}")
                return
        assert isinstance(closed, Closed)
        for value in closed.lateness_s:
            self.stats.record(value)
        self.sent = closed.sent or []

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
        self._send_command(Submit([(m.beat, int(m.order), m.data) for m in messages]))

    def cancel_from(self, beat: float) -> None:
        """Drop pending messages at or after `beat`, except note-offs (see `Dispatcher`)."""
        self._send_command(CancelFrom(beat))

    def panic(self, *, keep_clock: bool = False) -> None:
        """Drop everything pending and release every sounding note (+ CC 123 on used channels).

        With `keep_clock`, pending clock ticks stay queued. The child does it before anything
        submitted later. Returns at once and never raises: cleanup paths call it. (If the child
        is gone, it released the notes when it went.)
        """
        try:
            self._send_command(Panic(keep_clock))
        except DispatcherError as err:
            log.debug("panic not sent: %s", err)

    def status(self, timeout_s: float = 5.0) -> SenderStatus:
        """Ask the child how it stands: a round trip, for tests and diagnostics. Works after a
        sending failure too (`failed` says so)."""
        with self._lock:
            conn = self._usable_conn(raise_failure=False)
            try:
                conn.send(Status())
            except OSError as err:
                raise self._gone(err) from err
            report = self._receive(conn, StatusReport, timeout_s=timeout_s)
        assert isinstance(report, StatusReport)
        return report.status

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
                self._usable_conn().send(Tempo(segments))
            except (OSError, DispatcherError) as err:
                log.debug("tempo map not forwarded: %s", err)

    def _send_command(self, command: Command) -> None:
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

    def _receive(self, conn: Connection, *wanted: type[Reply], timeout_s: float) -> Reply:
        """The next reply of one of the `wanted` kinds, taking in anything said meanwhile."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline_s - time.monotonic()
            try:
                if remaining_s <= 0 or not conn.poll(remaining_s):
                    names = "/".join(kind.__name__ for kind in wanted)
                    raise DispatcherError(f"no {names} from the sender process in {timeout_s:g} s")
                reply = conn.recv()
            except (EOFError, OSError) as err:
                raise self._gone(err) from err
            if isinstance(reply, wanted):
                return reply
            self._take(reply)

    def _take(self, reply: Reply) -> None:
        match reply:
            case Failed(type_name, message, remote_traceback):
                self._error = RemoteSenderError(f"{type_name}: {message}", remote_traceback)
                log.error("the sender process failed; it released all notes:\n%s", remote_traceback)
            case PortChange("lost", label, notes):
                log.warning(
                    "MIDI output %s is gone: %d sounding notes released in the recording; it is "
                    "reopened when it comes back",
                    label,
                    notes,
                )
            case PortChange(_, label, notes):
                log.warning(
                    "MIDI output %s is back: reopened, the %d notes it missed released",
                    label,
                    notes,
                )
            case Terminated(signum):
                self._stopped_by = signum
                name = signal.Signals(signum).name
                log.info("the sender process was stopped by %s; it released all notes", name)
            case _:
                raise DispatcherError(f"unexpected reply from the sender process: {reply!r}")

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
    output: OutputOpener,
    *,
    record: RecorderOpener | None = None,
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
