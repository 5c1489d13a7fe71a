"""Benchmarks that the package never imports.

    python tools/bench.py timing [--events 2000] [--json FILE]

`timing` sends the same schedule twice under the same background CPU load ("the composer is busy
generating"): once through the live `Dispatcher` thread, once by plain trio scheduling
(`trio.sleep_until` per event, the baseline). It reports how late each message reached the output
(actual − scheduled, measured with `time.perf_counter` inside the sink) as p50/p99/max in ms, and
the ratio baseline/dispatcher. `bench_timing(events)` returns the same numbers as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livekomp.music.messages import ScheduledMessage, note_off, note_on
from livekomp.outputs.midi import MemoryOutput, TrackedOutput
from livekomp.timing.clock import MasterClock
from livekomp.timing.dispatcher import Dispatcher, summarize_ms

BPM = 120.0
STEPS_PER_BEAT = 96  # one event per 1/96 beat: 5.2 ms apart at 120 BPM, 2,000 events in ~10 s
LEAD_IN_S = 0.3


# -- background load -------------------------------------------------------------------------


def _burn_forever() -> None:
    """Busy CPU work until killed: a small torch matmul loop if torch is here, else pure Python."""
    try:
        import torch

        torch.set_num_threads(1)
        a = torch.randn(128, 128)
        while True:
            a = torch.tanh(a @ a)
    except ImportError:
        x = 0
        while True:
            for i in range(10_000):
                x = (x * 31 + i) % 1_000_003


def _burn_until(stop: threading.Event) -> None:
    # Pure-Python work in this process: it holds the GIL, like a composer's Python glue code.
    x = 0
    while not stop.is_set():
        for i in range(1_000):
            x = (x * 31 + i) % 1_000_003


class Load:
    """`procs` busy processes (other cores) and `threads` busy threads here (GIL contention)."""

    def __init__(self, procs: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._procs = [context.Process(target=_burn_forever, daemon=True) for _ in range(procs)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=_burn_until, args=(self._stop,), daemon=True)
            for _ in range(threads)
        ]

    def __enter__(self) -> Load:
        for worker in (*self._procs, *self._threads):
            worker.start()
        time.sleep(1.0)  # let spawned interpreters get going
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.terminate()
            proc.join()
        for thread in self._threads:
            thread.join()


def describe_load(procs: int, threads: int) -> str:
    try:
        import torch  # noqa: F401

        kind = "torch matmul"
    except ImportError:
        kind = "pure Python"
    return f"{procs} busy process(es) ({kind}), {threads} busy thread(s) in-process (GIL)"


# -- the schedule ----------------------------------------------------------------------------


def make_schedule(events: int) -> list[ScheduledMessage]:
    """`events` messages, each at its own time: note-on/note-off pairs over four channels."""
    messages = []
    for i in range(events):
        channel, pitch = (i // 2) % 4, 48 + (i // 8) % 24
        data = note_on(channel, pitch, 100) if i % 2 == 0 else note_off(channel, pitch)
        messages.append(ScheduledMessage.at(i / STEPS_PER_BEAT, data))
    return messages


def _lateness_s(sink: MemoryOutput, clock: MasterClock) -> list[float]:
    tempo_map = clock.tempo_map
    return [m.time_s - tempo_map.time_at(m.beat) for m in sink.sent]


def _check_complete(name: str, sink: MemoryOutput, events: int) -> None:
    if len(sink.sent) != events:
        raise RuntimeError(f"{name}: {len(sink.sent)} of {events} messages arrived")


async def _run_dispatcher(messages: list[ScheduledMessage]) -> tuple[list[float], bool]:
    sink = MemoryOutput(now_s=time.perf_counter)
    clock = MasterClock(BPM)
    dispatcher = Dispatcher(clock, TrackedOutput(sink))
    dispatcher.start()
    try:
        clock.start(time.perf_counter() + LEAD_IN_S)
        # Feed it a beat ahead, as the performer does.
        by_beat: dict[int, list[ScheduledMessage]] = {}
        for message in messages:
            by_beat.setdefault(math.floor(message.beat), []).append(message)
        for beat, chunk in sorted(by_beat.items()):
            await clock.sleep_until_beat(beat - 1)
            dispatcher.submit(chunk)
        await clock.sleep_until_beat(messages[-1].beat + 0.1)
        _check_complete("dispatcher", sink, len(messages))
    finally:
        dispatcher.close()  # its panic adds All Notes Off messages: counted before
    return _lateness_s(sink, clock)[: len(messages)], dispatcher.realtime


async def _run_trio_baseline(messages: list[ScheduledMessage]) -> list[float]:
    sink = MemoryOutput(now_s=time.perf_counter)
    output = TrackedOutput(sink)
    clock = MasterClock(BPM)
    clock.start(time.perf_counter() + LEAD_IN_S)
    tempo_map = clock.tempo_map
    trio_minus_perf_s = trio.current_time() - time.perf_counter()
    for message in messages:
        await trio.sleep_until(tempo_map.time_at(message.beat) + trio_minus_perf_s)
        output.send(message.data, message.beat)
    _check_complete("trio baseline", sink, len(messages))
    return _lateness_s(sink, clock)


def bench_timing(
    events: int = 2000, *, load_procs: int = 2, load_threads: int = 0, trio_rt_priority: int = 0
) -> dict:
    """Dispatcher vs. trio-baseline send-time error under load; summaries in ms.

    `trio_rt_priority` > 0 runs the trio thread under SCHED_FIFO at that priority (below the
    dispatcher's): a trio thread preempted by the load while it holds the GIL delays the
    dispatcher thread, which needs the GIL to send.
    """
    if events < 2:
        raise ValueError("need at least 2 events")
    messages = make_schedule(events)
    with Load(load_procs, load_threads):
        # After the load has started: spawned processes inherit the policy of their parent.
        if trio_rt_priority:
            policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
            os.sched_setscheduler(0, policy, os.sched_param(trio_rt_priority))
        try:
            dispatcher_s, realtime = trio.run(_run_dispatcher, messages)
            baseline_s = trio.run(_run_trio_baseline, messages)
        finally:
            if trio_rt_priority:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    dispatcher = summarize_ms(dispatcher_s)
    baseline = summarize_ms(baseline_s)
    ratio = {
        key: (baseline[key] / dispatcher[key] if dispatcher[key] > 0 else math.inf)
        for key in ("p50_ms", "p99_ms", "max_ms")
    }
    return {
        "events": events,
        "bpm": BPM,
        "event_spacing_ms": 60_000 / BPM / STEPS_PER_BEAT,
        "load": describe_load(load_procs, load_threads),
        "trio_thread": f"SCHED_FIFO {trio_rt_priority}" if trio_rt_priority else "normal",
        "dispatcher_sched_fifo": realtime,
        "dispatcher": dispatcher,
        "trio_baseline": baseline,
        "ratio_baseline_over_dispatcher": ratio,
    }


def format_timing(result: dict) -> str:
    rows: list[tuple[str, Callable[[str], str]]] = [
        ("dispatcher", lambda k: f"{result['dispatcher'][k]:8.3f}"),
        ("trio sleep_until", lambda k: f"{result['trio_baseline'][k]:8.3f}"),
        ("ratio trio/disp.", lambda k: f"{result['ratio_baseline_over_dispatcher'][k]:7.1f}x"),
    ]
    lines = [
        f"send-time error (actual - scheduled), {result['events']} events "
        f"{result['event_spacing_ms']:.2f} ms apart",
        f"load: {result['load']}",
        f"dispatcher SCHED_FIFO: {result['dispatcher_sched_fifo']}; "
        f"trio thread: {result['trio_thread']}",
        f"{'':18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for name, cell in rows:
        lines.append(f"{name:18} {cell('p50_ms')} {cell('p99_ms')} {cell('max_ms')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("timing", help="dispatcher vs trio send-time error under load")
    timing.add_argument("--events", type=int, default=2000, help="messages to send (>= 2)")
    timing.add_argument("--load-procs", type=int, default=2, help="busy background processes")
    timing.add_argument(
        "--load-threads", type=int, default=0, help="busy Python threads in this process (GIL)"
    )
    timing.add_argument(
        "--trio-rt-priority", type=int, default=0, help="SCHED_FIFO priority for the trio thread"
    )
    timing.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args(argv)

    result = bench_timing(
        args.events,
        load_procs=args.load_procs,
        load_threads=args.load_threads,
        trio_rt_priority=args.trio_rt_priority,
    )
    print(format_timing(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
