"""Sends each scheduled MIDI message at its time.

trio's timers wake up to a millisecond late, so sending happens off the trio loop. Live, the
sender is a child process (`livekomp.dispatch.sender.ProcessDispatcher`): a thread in the server's
process must wait for the GIL while the composer runs Python. `Dispatcher`, the thread, is kept
for tests and benchmarks: it sleeps on a condition variable until `spin_s` before the earliest
deadline, then busy-spins on the clock to the deadline and sends everything due, under
SCHED_FIFO at a low priority where the OS allows it (below the audio server's: a higher one
stalled JACK on 2 cores). In rehearsal, `VirtualDispatcher` does the same as a trio task in
virtual time. Both share the queue and its bookkeeping (`_Schedule`); the pending-message rules
(`MessageHeap`) are shared with the sender process too.

Messages are kept in beats and converted to seconds with the clock's current tempo map at the
moment of sending, so a tempo change moves every pending message. A submit of an earlier message
or a tempo change wakes the sender to re-plan.

Stopping: `cancel_from(beat)` drops pending messages at or after `beat` but keeps every pending
note-off, so notes already sounding end when they were meant to (the `TrackedOutput` drops the
note-offs whose note-ons were cancelled). That needs the clock to keep running; on a transport stop
call `panic()`, which drops everything pending and releases every sounding note at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import trio

from livekomp.clock.clock import MasterClock, TempoMap
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.measure import summarize_ms
from livekomp.music.messages import ScheduledMessage, is_note_off

log = logging.getLogger(__name__)

_HeapEntry = tuple[float, int, int, ScheduledMessage]


class DispatcherError(RuntimeError):
    """The sender failed (e.g. the MIDI port vanished); the cause is chained."""


class LatenessStats:
    """A bounded record of how late each message was sent (actual − scheduled seconds)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.lateness_s: deque[float] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def record(self, lateness_s: float) -> None:
        with self._lock:
            self.lateness_s.append(lateness_s)

    def clear(self) -> None:
        with self._lock:
            self.lateness_s.clear()

    def summary(self) -> dict[str, float]:
        """p50, p99 and max lateness in milliseconds, and the count."""
        with self._lock:
            values = sorted(self.lateness_s)
        return summarize_ms(values)


class MessageHeap:
    """Pending messages ordered by (beat, send order, arrival), and the rules for dropping them.

    Shared by every sender (the threads here and the sender process in `sender.py`), so that
    "cancel keeps note-offs" and "panic may keep the clock" mean the same everywhere. Not locked:
    its owner serializes access.
    """

    def __init__(self) -> None:
        self._heap: list[_HeapEntry] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, messages: Iterable[ScheduledMessage]) -> bool:
        """Queue `messages`; True if the earliest pending message is now an earlier one."""
        head = self._heap[0] if self._heap else None
        for message in messages:
            heapq.heappush(self._heap, (message.beat, int(message.order), next(self._seq), message))
        return bool(self._heap) and (head is None or self._heap[0] < head)

    def head_beat(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def cancel_from(self, beat: float) -> None:
        """Drop messages at or after `beat`, except note-offs (see the module doc)."""
        kept = [e for e in self._heap if e[0] < beat or is_note_off(e[3].data)]
        heapq.heapify(kept)
        self._heap = kept

    def clear(self, *, keep_clock: bool = False) -> None:
        """Drop everything, or with `keep_clock` everything but realtime messages (clock ticks)."""
        if keep_clock:
            self._heap = [e for e in self._heap if e[3].data[0] >= 0xF8]
            heapq.heapify(self._heap)
        else:
            self._heap.clear()

    def pop_due(self, tempo_map: TempoMap, now_s: float) -> list[tuple[float, ScheduledMessage]]:
        """Pop every message due at `now_s`, each with its deadline in seconds."""
        due: list[tuple[float, ScheduledMessage]] = []
        while self._heap:
            deadline_s = tempo_map.time_at(self._heap[0][0])
            if deadline_s > now_s:
                break
            due.append((deadline_s, heapq.heappop(self._heap)[3]))
        return due


class _Schedule:
    """The queue and bookkeeping shared by the live and the virtual dispatcher.

    Pending messages sit in a heap ordered by (beat, send order, arrival). `_cond` guards the heap;
    `_send_lock` is held while a batch is being sent, so that a panic never releases notes while a
    note-on it has not seen is still on its way (the batch is dropped if a panic came first, which
    `_generation` tells). Subclasses implement `_wake` to make their sender re-plan.
    """

    def __init__(self, clock: MasterClock, output: TrackedOutput) -> None:
        self.clock = clock
        self.output = output
        self.stats = LatenessStats()
        self._cond = threading.Condition(threading.RLock())
        self._send_lock = threading.RLock()
        self._queue = MessageHeap()
        self._generation = 0
        self._last_beat = 0.0
        self._closed = False
        self._error: BaseException | None = None
        clock.add_listener(self._on_clock_change)

    # -- called from the trio thread (or any thread) -------------------------------------------

    def submit(self, messages: Iterable[ScheduledMessage]) -> None:
        """Queue messages for sending; returns at once."""
        self._raise_if_failed()
        # Materialized before taking the lock: `messages` may be a lazy generator.
        entries = list(messages)
        with self._cond:
            if self._closed:
                raise DispatcherError("submit on a closed dispatcher")
            if self._queue.push(entries):
                self._wake()

    def cancel_from(self, beat: float) -> None:
        """Drop pending messages at or after `beat`, except note-offs (see the module doc)."""
        self._raise_if_failed()
        with self._cond:
            self._queue.cancel_from(beat)
            self._wake()

    def panic(self, *, keep_clock: bool = False) -> None:
        """Drop everything pending and release every sounding note (+ CC 123 on used channels).

        With `keep_clock`, pending realtime messages (MIDI clock ticks) stay queued, so followers
        keep time through a panic. Safe from any thread, a signal handler or an exception
        cleanup path.
        """
        with self._cond:
            self._queue.clear(keep_clock=keep_clock)
            self._generation += 1
            self._wake()
        with self._send_lock:
            self.output.release_all(self._current_beat())

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the sender, if any."""
        return self._error

    # -- shared by the senders -------------------------------------------------------------------

    def _wake(self) -> None:
        raise NotImplementedError

    def _on_clock_change(self) -> None:
        if not self._closed:
            with self._cond:
                self._wake()

    def _current_beat(self) -> float:
        try:
            return self.clock.current_beat()
        except RuntimeError:  # clock stopped
            return self._last_beat

    def _tempo_map(self) -> TempoMap | None:
        try:
            return self.clock.tempo_map
        except RuntimeError:
            return None

    def _head_deadline_s(self) -> float | None:
        """Seconds (clock time base) of the earliest pending message; None if none or stopped.

        Caller holds `_cond`.
        """
        head_beat = self._queue.head_beat()
        if head_beat is None:
            return None
        tempo_map = self._tempo_map()
        if tempo_map is None:
            return None
        return tempo_map.time_at(head_beat)

    def _pop_due(self, now_s: float) -> tuple[int, list[tuple[float, ScheduledMessage]]]:
        """Pop every message due at `now_s`, with its deadline; plus the panic generation."""
        with self._cond:
            tempo_map = self._tempo_map()
            due = [] if tempo_map is None else self._queue.pop_due(tempo_map, now_s)
            return self._generation, due

    def _send_batch(self, generation: int, due: list[tuple[float, ScheduledMessage]]) -> None:
        now_s = self.clock.now_s
        with self._send_lock:
            if generation != self._generation:
                return  # a panic came between popping and sending: these are cancelled
            for deadline_s, message in due:
                self.stats.record(now_s() - deadline_s)
                self._last_beat = message.beat
                self.output.send(message.data, message.beat)

    def _close_queue(self) -> bool:
        """Release everything and mark the queue closed; False if it was closed already."""
        if self._closed:
            return False
        try:
            if self._error is None:  # after a failure the notes were released already
                self.panic()
        finally:
            with self._cond:
                self._closed = True
                self._wake()
        return True

    def _fail(self, err: BaseException) -> None:
        """The sender died: keep the error for the caller and release what is sounding."""
        log.error("dispatcher failed; releasing all notes", exc_info=err)
        self._error = err
        with self._cond:
            self._queue.clear()
            self._generation += 1
        try:
            with self._send_lock:
                self.output.release_all(self._last_beat)
        except Exception as release_err:
            log.error("releasing notes after the failure failed too: %r", release_err)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise DispatcherError(f"the dispatcher failed: {self._error!r}") from self._error


class Dispatcher(_Schedule):
    """The live sender: one dedicated thread that sleeps, spins the last `spin_s`, and sends.

    `on_error`, if given, is called from the sender thread with the exception that stopped it
    (after the notes were released); the error is also raised by the next `submit`,
    `cancel_from` or `close`. The dispatcher does not close its output; its owner does.
    """

    def __init__(
        self,
        clock: MasterClock,
        output: TrackedOutput,
        *,
        spin_s: float = 200e-6,
        rt_priority: int = 3,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        super().__init__(clock, output)
        self.spin_s = spin_s
        self.rt_priority = rt_priority
        self.on_error = on_error
        self.realtime = False
        self._thread = threading.Thread(target=self._run, name="livekomp-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def thread_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 2.0) -> None:
        """Panic, stop the thread and join it; raises the sender's error if it failed."""
        if self._close_queue() and self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("dispatcher thread did not stop within %.1f s", timeout_s)
        self._raise_if_failed()

    def _wake(self) -> None:
        self._cond.notify()

    def _set_realtime(self) -> None:
        if not hasattr(os, "sched_setscheduler"):
            log.info("dispatcher: no SCHED_FIFO on this OS; normal scheduling")
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.rt_priority))
        except OSError as err:
            log.warning("dispatcher: SCHED_FIFO not permitted (%s); normal scheduling", err)
        else:
            self.realtime = True
            log.debug("dispatcher: SCHED_FIFO priority %d", self.rt_priority)

    def _run(self) -> None:
        self._set_realtime()
        now_s = self.clock.now_s
        try:
            while True:
                with self._cond:
                    while True:
                        if self._closed:
                            return
                        deadline_s = self._head_deadline_s()
                        if deadline_s is None:
                            self._cond.wait()
                            continue
                        sleep_s = deadline_s - now_s() - self.spin_s
                        if sleep_s <= 0:
                            break
                        self._cond.wait(sleep_s)
                # The lock is free while spinning, so submits and panics never wait for it.
                while now_s() < deadline_s:
                    pass
                self._send_batch(*self._pop_due(now_s()))
        except Exception as err:
            self._fail(err)
            if self.on_error is not None:
                try:
                    self.on_error(err)
                except Exception:
                    log.exception("dispatcher on_error callback failed")


class VirtualDispatcher(_Schedule):
    """The rehearsal sender: a trio task sending at exact virtual times.

    The clock's time base must be trio's clock (`MasterClock(now_s=trio.current_time)`), which
    under `trio.testing.MockClock` makes the whole run deterministic. Run `serve` in a nursery;
    an exception while sending releases all notes and propagates out of `serve`.
    """

    def __init__(self, clock: MasterClock, output: TrackedOutput) -> None:
        super().__init__(clock, output)
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()

    def close(self) -> None:
        """Panic and stop serving; raises the sender's error if it failed."""
        self._close_queue()
        self._raise_if_failed()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send messages at their times until closed or cancelled."""
        task_status.started()
        try:
            while True:
                with self._cond:
                    if self._closed:
                        return
                    changed = self._changed = trio.Event()
                    deadline_s = self._head_deadline_s()
                if deadline_s is None:
                    await changed.wait()
                    continue
                if self.clock.now_s() < deadline_s:
                    with trio.move_on_at(deadline_s):
                        await changed.wait()
                    continue
                self._send_batch(*self._pop_due(self.clock.now_s()))
                await trio.lowlevel.checkpoint()
        except Exception as err:
            self._fail(err)
            raise


@asynccontextmanager
async def open_dispatcher(
    clock: MasterClock,
    output: TrackedOutput,
    *,
    spin_s: float = 200e-6,
    rt_priority: int = 3,
    on_error: Callable[[BaseException], None] | None = None,
) -> AsyncIterator[Dispatcher]:
    """A started live `Dispatcher`, always closed (panic first) on the way out."""
    dispatcher = Dispatcher(
        clock, output, spin_s=spin_s, rt_priority=rt_priority, on_error=on_error
    )
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        with trio.CancelScope(shield=True):
            dispatcher.close()


@asynccontextmanager
async def open_virtual_dispatcher(
    clock: MasterClock, output: TrackedOutput
) -> AsyncIterator[VirtualDispatcher]:
    """A `VirtualDispatcher` serving in its own nursery, closed (panic first) on the way out."""
    dispatcher = VirtualDispatcher(clock, output)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        try:
            yield dispatcher
        finally:
            with trio.CancelScope(shield=True):
                dispatcher.close()
            nursery.cancel_scope.cancel()
