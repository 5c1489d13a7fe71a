"""Send-time error under CPU load: the sender process against the dispatcher thread and plain
trio scheduling.

    python -m tools.bench timing [--events 2000] [--load composer] [--load-procs N]
                                 [--load-threads N] [--load-disk N] [--json FILE]

`timing` sends the same schedule three times under the same CPU load ("the composer is busy
generating"): through the sender process (`ProcessDispatcher`), through the live `Dispatcher`
thread, and by plain trio scheduling (`trio.sleep_until` per event, the baseline). The load is any
mix of busy processes (other cores), busy Python threads here, and — `--load composer` — livekomp's
real `RuleComposer` composing bar after bar in a thread of this process: pure Python that holds the
GIL, as a composer does live (`tools.bench.load`). It reports how late each message reached the
output (actual − scheduled, stamped with `time.perf_counter` inside the in-memory sink, which for
the sender process lives in the child) as p50/p99/max in ms, and each sender's ratio against the
trio baseline. `bench_timing(events, ...)` returns the same numbers as a dict.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import trio

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.dispatcher import Dispatcher
from livekomp.dispatch.sender import ProcessDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.dispatch.wire import SentMessage
from livekomp.measure import summarize_ms
from livekomp.music.messages import ScheduledMessage, note_off, note_on
from livekomp.outputs.midi import MemoryOutput, OutputSpec
from tools.bench.load import Load, describe_load

BPM = 120.0
STEPS_PER_BEAT = 96  # one event per 1/96 beat: 5.2 ms apart at 120 BPM, 2,000 events in ~10 s
LEAD_IN_S = 0.3


def make_schedule(events: int) -> list[ScheduledMessage]:
    """`events` messages, each at its own time: note-on/note-off pairs over four channels."""
    messages = []
    for i in range(events):
        channel, pitch = (i // 2) % 4, 48 + (i // 8) % 24
        data = note_on(channel, pitch, 100) if i % 2 == 0 else note_off(channel, pitch)
        messages.append(ScheduledMessage.at(i / STEPS_PER_BEAT, data))
    return messages


def _lateness_s(sent: list[SentMessage], clock: MasterClock) -> list[float]:
    tempo_map = clock.tempo_map
    return [m.time_s - tempo_map.time_at(m.beat) for m in sent]


def _check_complete(name: str, sent: list[SentMessage], events: int) -> None:
    if len(sent) < events:
        raise RuntimeError(f"{name}: {len(sent)} of {events} messages arrived")


async def _feed(
    clock: MasterClock, dispatcher: Dispatcher | ProcessDispatcher, messages: list[ScheduledMessage]
) -> None:
    """Submit a beat ahead, as the performer does, and wait past the last message."""
    by_beat: dict[int, list[ScheduledMessage]] = {}
    for message in messages:
        by_beat.setdefault(math.floor(message.beat), []).append(message)
    for beat, chunk in sorted(by_beat.items()):
        await clock.sleep_until_beat(beat - 1)
        dispatcher.submit(chunk)
    await clock.sleep_until_beat(messages[-1].beat + 0.1)


async def _run_dispatcher(messages: list[ScheduledMessage]) -> tuple[list[float], bool]:
    sink = MemoryOutput(now_s=time.perf_counter)
    clock = MasterClock(BPM)
    dispatcher = Dispatcher(clock, TrackedOutput(sink))
    dispatcher.start()
    try:
        clock.start(time.perf_counter() + LEAD_IN_S)
        await _feed(clock, dispatcher, messages)
        _check_complete("dispatcher", sink.sent, len(messages))
    finally:
        dispatcher.close()  # its panic adds All Notes Off messages: counted before
    return _lateness_s(sink.sent[: len(messages)], clock), dispatcher.realtime


async def _run_process_dispatcher(
    messages: list[ScheduledMessage],
) -> tuple[list[float], bool, float]:
    clock = MasterClock(BPM)
    dispatcher = ProcessDispatcher(clock, OutputSpec.memory())
    await trio.to_thread.run_sync(dispatcher.start)
    try:
        clock.start(time.perf_counter() + LEAD_IN_S)
        await _feed(clock, dispatcher, messages)
    finally:
        dispatcher.close()  # the sent messages come back from the child here
    _check_complete("process dispatcher", dispatcher.sent, len(messages))
    sent = dispatcher.sent[: len(messages)]
    return _lateness_s(sent, clock), dispatcher.realtime, dispatcher.startup_s


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
    _check_complete("trio baseline", sink.sent, len(messages))
    return _lateness_s(sink.sent, clock)


def _ratio(baseline: dict[str, float], sender: dict[str, float]) -> dict[str, float]:
    """How many times later the trio baseline is than `sender`, per statistic."""
    return {
        key: (baseline[key] / sender[key] if sender[key] > 0 else math.inf)
        for key in ("p50_ms", "p99_ms", "max_ms")
    }


def bench_timing(
    events: int = 2000,
    *,
    load_procs: int = 2,
    load_threads: int = 0,
    load_composers: int = 0,
    load_disk: int = 0,
    trio_rt_priority: int = 0,
) -> dict:
    """Sender process vs. dispatcher thread vs. trio baseline, send-time error under one load;
    summaries in ms.

    `trio_rt_priority` > 0 runs the trio thread under SCHED_FIFO at that priority (below the
    dispatcher's): a trio thread preempted by the load while it holds the GIL delays the
    dispatcher thread, which needs the GIL to send.
    """
    if events < 2:
        raise ValueError("need at least 2 events")
    messages = make_schedule(events)
    with Load(load_procs, load_threads, load_composers, disk=load_disk):
        # After the load has started: spawned processes inherit the policy of their parent.
        if trio_rt_priority:
            policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
            os.sched_setscheduler(0, policy, os.sched_param(trio_rt_priority))
        try:
            process_s, process_realtime, startup_s = trio.run(_run_process_dispatcher, messages)
            dispatcher_s, realtime = trio.run(_run_dispatcher, messages)
            baseline_s = trio.run(_run_trio_baseline, messages)
        finally:
            if trio_rt_priority:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    process = summarize_ms(process_s)
    dispatcher = summarize_ms(dispatcher_s)
    baseline = summarize_ms(baseline_s)
    return {
        "events": events,
        "bpm": BPM,
        "event_spacing_ms": 60_000 / BPM / STEPS_PER_BEAT,
        "load": describe_load(load_procs, load_threads, load_composers, load_disk),
        "trio_thread": f"SCHED_FIFO {trio_rt_priority}" if trio_rt_priority else "normal",
        "process_sched_fifo": process_realtime,
        "process_startup_ms": startup_s * 1e3,
        "dispatcher_sched_fifo": realtime,
        "process_dispatcher": process,
        "dispatcher": dispatcher,
        "trio_baseline": baseline,
        "ratio_baseline_over_process": _ratio(baseline, process),
        "ratio_baseline_over_dispatcher": _ratio(baseline, dispatcher),
    }


def format_timing(result: dict) -> str:
    def summary(key: str) -> Callable[[str], str]:
        return lambda stat: f"{result[key][stat]:8.3f}"

    def ratio(key: str) -> Callable[[str], str]:
        return lambda stat: f"{result[key][stat]:7.1f}x"

    rows: list[tuple[str, Callable[[str], str]]] = [
        ("sender process", summary("process_dispatcher")),
        ("dispatcher thread", summary("dispatcher")),
        ("trio sleep_until", summary("trio_baseline")),
        ("ratio trio/process", ratio("ratio_baseline_over_process")),
        ("ratio trio/thread", ratio("ratio_baseline_over_dispatcher")),
    ]
    lines = [
        f"send-time error (actual - scheduled), {result['events']} events "
        f"{result['event_spacing_ms']:.2f} ms apart",
        f"load: {result['load']}",
        f"SCHED_FIFO: sender process {result['process_sched_fifo']}, "
        f"dispatcher thread {result['dispatcher_sched_fifo']}; "
        f"trio thread: {result['trio_thread']}; "
        f"sender process start-up {result['process_startup_ms']:.0f} ms",
        f"{'':18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for name, cell in rows:
        lines.append(f"{name:18} {cell('p50_ms')} {cell('p99_ms')} {cell('max_ms')}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=2000, help="messages to send (>= 2)")
    parser.add_argument("--load-procs", type=int, default=2, help="busy background processes")
    parser.add_argument(
        "--load-threads", type=int, default=0, help="busy Python threads in this process (GIL)"
    )
    parser.add_argument(
        "--load-disk",
        type=int,
        default=0,
        help="disk writers: 300 MB written and synced, then compressed, over and over",
    )
    parser.add_argument(
        "--load",
        choices=["composer"],
        action="append",
        default=[],
        help="in-process load: 'composer' runs livekomp's RuleComposer in a thread (repeatable)",
    )
    parser.add_argument(
        "--trio-rt-priority", type=int, default=0, help="SCHED_FIFO priority for the trio thread"
    )


def run(args: argparse.Namespace) -> dict:
    return bench_timing(
        args.events,
        load_procs=args.load_procs,
        load_threads=args.load_threads,
        load_composers=args.load.count("composer"),
        load_disk=args.load_disk,
        trio_rt_priority=args.trio_rt_priority,
    )
