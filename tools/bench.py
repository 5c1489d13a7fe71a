"""Benchmarks that the package never imports.

    python tools/bench.py timing [--events 2000] [--load composer] [--load-procs N]
                                 [--load-threads N] [--json FILE]

`timing` sends the same schedule three times under the same CPU load ("the composer is busy
generating"): through the sender process (`ProcessDispatcher`), through the live `Dispatcher`
thread, and by plain trio scheduling (`trio.sleep_until` per event, the baseline). The load is any
mix of busy processes (other cores), busy Python threads here, and — `--load composer` — livekomp's
real `RuleComposer` composing bar after bar in a thread of this process: pure Python that holds the
GIL, as a composer does live. It reports how late each message reached the output (actual −
scheduled, stamped with `time.perf_counter` inside the in-memory sink, which for the sender process
lives in the child) as p50/p99/max in ms, and each sender's ratio against the trio baseline.
`bench_timing(events, ...)` returns the same numbers as a dict.
"""

from __future__ import annotations

import argparse
import bisect
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
sys.path.insert(1, str(Path(__file__).resolve().parent))

from livekomp.clock.clock import MasterClock
from livekomp.dispatch.dispatcher import Dispatcher
from livekomp.dispatch.sender import OutputSpec, ProcessDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.measure import summarize_ms
from livekomp.music.messages import ScheduledMessage, note_off, note_on
from livekomp.music.phrase import BarRequest
from livekomp.music.rules import RuleComposer
from livekomp.outputs.midi import MemoryOutput, SentMessage

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


def _compose_until(stop: threading.Event) -> None:
    # livekomp's own composer, bar after bar through a wandering mood: the in-process work live.
    composer = RuleComposer(seed=1)
    index = 0
    while not stop.is_set():
        phase = index * 0.37
        request = BarRequest(
            index=index,
            beats_per_bar=4,
            tonic=index % 12,
            valence=math.sin(phase),
            arousal=math.cos(phase * 0.7),
            density=0.5 + 0.4 * math.sin(phase * 1.3),
        )
        composer.compose_bar(request)
        index += 1


class Load:
    """`procs` busy processes (other cores), `threads` busy threads and `composers` composer
    threads here (GIL contention)."""

    def __init__(self, procs: int, threads: int, composers: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self._procs = [context.Process(target=_burn_forever, daemon=True) for _ in range(procs)]
        self._stop = threading.Event()
        targets = [_burn_until] * threads + [_compose_until] * composers
        self._threads = [
            threading.Thread(target=target, args=(self._stop,), daemon=True) for target in targets
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


def describe_load(procs: int, threads: int, composers: int = 0) -> str:
    try:
        import torch  # noqa: F401

        kind = "torch matmul"
    except ImportError:
        kind = "pure Python"
    return (
        f"{procs} busy process(es) ({kind}), {threads} busy thread(s) in-process (GIL), "
        f"{composers} RuleComposer thread(s) in-process (GIL)"
    )


# -- the schedule ----------------------------------------------------------------------------


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
    with Load(load_procs, load_threads, load_composers):
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
        "load": describe_load(load_procs, load_threads, load_composers),
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


# -- the MIDI clock of a live server, heard by a third-party JACK receiver ---------------------

JACK_FRAME_RATE = 48_000


def _dump_events(path: Path) -> list[tuple[int, bytes]]:
    """(frame, bytes) from `jack_midi_dump -a` output."""
    events = []
    for line in path.read_text().splitlines():
        frame, sep, rest = line.partition(":")
        if sep and frame.strip().isdigit():
            data = []
            for token in rest.split():
                if len(token) != 2:
                    break
                try:
                    data.append(int(token, 16))
                except ValueError:
                    break
            if data:
                events.append((int(frame), bytes(data)))
    return events


def bench_clock(bpm: float, seconds: float) -> dict:
    """Run `livekomp serve` at `bpm` for `seconds`, record its MIDI clock with jack_midi_dump,
    and compare the tempo it heard (least squares through the tick frames) with the request.

    Needs a running JACK server (jackd -d dummy -r 48000 …) and jackd2's tools. JACK delivers
    each message at its next period, so single ticks carry the period's quantization; the
    tempo fit averages it out.
    """
    import socket
    import subprocess
    import tempfile

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        osc_port = sock.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-clock-"))
    dump_name = f"lkbench{os.getpid()}"
    with (folder / "dump.txt").open("w") as dump_out, (folder / "serve.log").open("w") as log:
        dump = subprocess.Popen(
            ["stdbuf", "-oL", "jack_midi_dump", "-a", dump_name], stdout=dump_out
        )
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "livekomp.cli",
                "serve",
                "--midi-api",
                "jack",
                "--bpm",
                str(bpm),
                "--osc-port",
                str(osc_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            label = None
            deadline = time.monotonic() + 30
            while label is None and time.monotonic() < deadline:
                for line in (folder / "serve.log").read_text().splitlines():
                    if "MIDI output open: " in line:
                        label = line.split("MIDI output open: ", 1)[1].split(" (", 1)[0]
                time.sleep(0.05)
            if label is None:
                raise RuntimeError(f"livekomp serve did not start; see {folder / 'serve.log'}")
            subprocess.run(["jack_connect", label, f"{dump_name}:input"], check=True)
            time.sleep(seconds)
        finally:
            serve.terminate()
            serve.wait(timeout=10)
            time.sleep(0.3)
            dump.terminate()
            dump.wait(timeout=10)
    frames = [frame for frame, data in _dump_events(folder / "dump.txt") if data == b"\xf8"]
    n = len(frames)
    if n < 48:
        raise RuntimeError(f"only {n} clock ticks arrived; see {folder}")
    mean_x, mean_y = (n - 1) / 2, sum(frames) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(frames)) / sum(
        (x - mean_x) ** 2 for x in range(n)
    )
    heard_bpm = 60.0 / (slope / JACK_FRAME_RATE * 24)
    residual_s = [
        abs(frame - (mean_y + (x - mean_x) * slope)) / JACK_FRAME_RATE
        for x, frame in enumerate(frames)
    ]
    return {
        "requested_bpm": bpm,
        "heard_bpm": heard_bpm,
        "tempo_error_percent": 100 * (heard_bpm - bpm) / bpm,
        "ticks": n,
        "tick_residual": summarize_ms(residual_s),
    }


def format_clock(result: dict) -> str:
    residual = result["tick_residual"]
    return "\n".join(
        [
            f"MIDI clock of livekomp serve, heard by jack_midi_dump ({result['ticks']} ticks)",
            f"requested {result['requested_bpm']:.3f} BPM, heard {result['heard_bpm']:.3f} BPM "
            f"({result['tempo_error_percent']:+.4f} %)",
            f"tick distance from the fitted grid: p50 {residual['p50_ms']:.3f} / "
            f"p99 {residual['p99_ms']:.3f} / max {residual['max_ms']:.3f} ms "
            "(includes JACK's period quantization)",
        ]
    )


# -- following a MIDI clock master ---------------------------------------------------------------


def _percentiles_ms(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if not ordered:
        return {"count": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": ordered[-1],
        "mean_ms": sum(ordered) / len(ordered),
    }


def bench_follow(
    tempi: list[float], bars_each: int, jitter_ms: float, nudge_ms: float = 0.0
) -> dict:
    """A JACK MIDI clock master (a peer in this process) plays `bars_each` bars at each tempo in
    turn; `livekomp serve --clock midi` follows it while jack_midi_dump hears both.

    Measured: (1) in this process, a `TickFilter` fed by a polled JACK input stamped from
    rtmidi's delta times, as the server's is: the tempo error one bar after each start or jump,
    and how many beats after a jump the tempo stays within 0.1 BPM; (2) from the dump (one JACK
    frame counter for both): the phase error of every livekomp note-on against the master's tick on
    the same sixteenth, outside the first beat after each jump (p50/p99/max of |error|, and the
    mean signed error, the constant part a `--nudge-ms` would take away). Needs a running JACK
    server; JACK delivers at period boundaries, so the period (jack_bufsize) bounds resolution.
    """
    import subprocess
    import tempfile

    import rtmidi

    from livekomp.clock.follow import CLOCK_IGNORE, TickFilter
    from livekomp.midiports import POLL_S, StampedInput, open_input
    from tools.beat_grid import note_positions, phase_errors_ms
    from tools.peers import ClockMaster, MidiDump, Serve, connect, master_beats

    bufsize = subprocess.run(["jack_bufsize"], capture_output=True, text=True).stdout.split()
    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-follow-"))
    master = ClockMaster(f"lkbm{os.getpid()}", jitter_s=jitter_ms * 1e-3, seed=7)
    listener, _ = open_input(
        None, rtmidi.API_UNIX_JACK, "in", client_name=f"lkbl{os.getpid()}", ignore=CLOCK_IGNORE
    )
    reader = StampedInput(listener)
    stamps: list[float] = []
    stop_polling = threading.Event()

    def poll() -> None:  # the server polls from trio; a thread does the same here
        while not stop_polling.is_set():
            stamps.extend(t_s for message, t_s in reader.read() if message == b"\xf8")
            time.sleep(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    dump = MidiDump(folder, f"lkbd{os.getpid()}")
    args = ["--clock", "midi", "--midi-clock-in", master.port, "--nudge-ms", str(nudge_ms)]
    serve = Serve(folder, *args)
    ticks_per_bar = 96
    try:
        connect(serve.port_label(), dump.port)
        connect(master.port, dump.port)
        connect(master.port, f"lkbl{os.getpid()}:in")
        serve.wait_for("listening for OSC")
        script: list[tuple] = [("ticks", tempi[0], 48), ("start",)]
        script += [("ticks", bpm, ticks_per_bar * bars_each) for bpm in tempi]
        script.append(("stop",))
        master.play(script)
        master.wait(timeout_s=600)
        time.sleep(0.5)
        serve.stop()
        time.sleep(0.3)
    finally:
        serve.kill()
        dump.close()
        master.close()
        stop_polling.set()
        poller.join()
        listener.delete()

    # (1) the filter, on what a JACK input hears
    tick_filter = TickFilter()
    fits = [tick_filter.add(t) for t in stamps]
    segments = []
    first = 48
    for i, bpm in enumerate(tempi):
        start = first + i * ticks_per_bar * bars_each
        end = start + ticks_per_bar * bars_each
        if end > len(fits):
            break
        within = end
        for j in range(end - 1, start - 1, -1):
            if abs(fits[j].bpm - bpm) > 0.1:
                break
            within = j
        segments.append(
            {
                "bpm": bpm,
                "tempo_error_after_one_bar_bpm": fits[start + ticks_per_bar - 1].bpm - bpm,
                "beats_until_within_0.1_bpm": (within - start + 1) / 24,
                "tempo_error_at_end_bpm": fits[end - 1].bpm - bpm,
            }
        )

    # (1b) the phase the follower predicts: each tick's time from the line through the ticks
    # before it (the map a note on that tick is sent by), against when the master sent it.
    # A tick JACK lost (an xrun on this busy machine) is matched by time, not by order: each
    # stamp belongs to the last tick sent before it.
    sent_s = [t for t, data in master.sent if data == b"\xf8"]
    ideal_s = master.ideal_tick_s  # the master's grid, its own jitter and lateness aside
    prediction_ms: list[float] = []
    ideal_ms: list[float] = []
    jump_ticks = [first + i * ticks_per_bar * bars_each for i in range(1, len(tempi))]
    replay = TickFilter()
    previous_match: int | None = None
    for stamp_s in stamps:
        match = bisect.bisect_right(sent_s, stamp_s) - 1
        line = replay._line
        steady = len(replay._window) >= replay.config.acquire_ticks and not replay._suspects
        near_jump = any(j <= match < j + 24 for j in jump_ticks)
        if (
            previous_match is not None
            and match > previous_match
            and line is not None
            and steady
            and match >= first
            and not near_jump
        ):
            origin_s, period_s = line
            predicted_s = origin_s + period_s * (replay.count + match - previous_match)
            prediction_ms.append((predicted_s - sent_s[match]) * 1e3)
            ideal_ms.append((predicted_s - ideal_s[match]) * 1e3)
        replay.add(stamp_s)
        previous_match = match
    mean_ms = sum(prediction_ms) / len(prediction_ms) if prediction_ms else math.nan
    ideal_mean_ms = sum(ideal_ms) / len(ideal_ms) if ideal_ms else math.nan
    prediction = {
        "mean_ms": mean_ms,  # the transport's latency: constant, what a nudge takes away
        "around_mean": _percentiles_ms([abs(e - mean_ms) for e in prediction_ms]),
        "vs_ideal_mean_ms": ideal_mean_ms,
        "vs_ideal_around_mean": _percentiles_ms([abs(e - ideal_mean_ms) for e in ideal_ms]),
    }

    # (2) the live server's notes against the master's ticks
    events = dump.events()
    ticks = master_beats(events, infer_lost=True)
    notes = note_positions(events, ticks)
    beats_each = 4 * bars_each
    jumps = [(i * beats_each, i * beats_each + 1.0) for i in range(1, len(tempi))]
    steady = phase_errors_ms(notes, ticks, skip=jumps)
    in_jumps = [
        (frame, beat)
        for frame, beat in notes
        if any(lo <= round(beat * 4) / 4 < hi for lo, hi in jumps)
    ]
    after_jumps = phase_errors_ms(in_jumps, ticks)
    return {
        "tempi": tempi,
        "bars_each": bars_each,
        "jitter_ms": jitter_ms,
        "nudge_ms": nudge_ms,
        "jack_period_frames": int(bufsize[0]) if bufsize and bufsize[0].isdigit() else None,
        "ticks_heard": len(stamps),
        "filter": segments,
        "predicted_phase": prediction,
        "phase_abs": _percentiles_ms([abs(e) for e in steady]),
        "phase_signed_mean_ms": sum(steady) / len(steady) if steady else math.nan,
        "phase_after_jumps_max_ms": max((abs(e) for e in after_jumps), default=math.nan),
        "folder": str(folder),
    }


def format_follow(result: dict) -> str:
    lines = [
        f"following a JACK MIDI clock master: {', '.join(f'{b:g}' for b in result['tempi'])} BPM, "
        f"{result['bars_each']} bars each, master jitter ±{result['jitter_ms'] / 2:g} ms, "
        f"nudge {result['nudge_ms']:g} ms ({result['ticks_heard']} ticks heard; JACK period "
        f"{result['jack_period_frames']} frames at 48 kHz)",
        "tempo (tick filter on a JACK input):",
    ]
    for seg in result["filter"]:
        lines.append(
            f"  {seg['bpm']:6.1f} BPM: error after one bar "
            f"{seg['tempo_error_after_one_bar_bpm']:+.3f} BPM, within 0.1 BPM after "
            f"{seg['beats_until_within_0.1_bpm']:.2f} beats, "
            f"at the end {seg['tempo_error_at_end_bpm']:+.3f} BPM"
        )
    pred = result["predicted_phase"]
    around = pred["around_mean"]
    if around.get("count"):
        lines.append(
            f"phase the follower predicts for each tick vs the master's send time "
            f"({around['count']} ticks, first beat after each jump aside): "
            f"mean {pred['mean_ms']:+.3f} ms (latency of the JACK transport), "
            f"around it p50 {around['p50_ms']:.3f} / p99 "
            f"{around['p99_ms']:.3f} / max {around['max_ms']:.3f} ms"
        )
    ideal = pred["vs_ideal_around_mean"]
    if ideal.get("count"):
        lines.append(
            f"  the same against the master's ideal grid (its own jitter and lateness aside): "
            f"mean {pred['vs_ideal_mean_ms']:+.3f} ms, around it p50 {ideal['p50_ms']:.3f} / "
            f"p99 {ideal['p99_ms']:.3f} / max {ideal['max_ms']:.3f} ms"
        )
    phase = result["phase_abs"]
    if phase.get("count"):
        lines.append(
            f"phase of livekomp's notes vs the master's ticks in the dump, quantized to JACK "
            f"periods ({phase['count']} notes, first beat "
            f"after each jump aside): |error| p50 {phase['p50_ms']:.3f} / p99 {phase['p99_ms']:.3f}"
            f" / max {phase['max_ms']:.3f} ms; mean signed {result['phase_signed_mean_ms']:+.3f} ms"
        )
    lines.append(
        f"in the first beat after a jump: max |error| {result['phase_after_jumps_max_ms']:.1f} ms"
    )
    return "\n".join(lines)


# -- Ableton Link: phase agreement with another peer ----------------------------------------


def bench_link(seconds_each: float) -> dict:
    """livekomp and a second Link peer in a network namespace (root; see
    tools/link_scenario.py): the phase of livekomp's notes on the peer's beat timeline,
    heard on a JACK input, at 100 then 130 BPM (the first beat after the change aside)."""
    import subprocess
    import tempfile

    from tools.link_scenario import netns_command

    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-link-"))
    out = folder / "link.json"
    script = Path(__file__).resolve().parents[1] / "tools" / "link_scenario.py"
    subprocess.run(
        netns_command([sys.executable, str(script), str(out), str(seconds_each)]),
        timeout=120 + 3 * seconds_each,
        check=True,
    )
    result = json.loads(out.read_text())
    if not result.get("ok"):
        raise RuntimeError(f"the Link scenario failed; see {out}")
    steady = [n["error_ms"] for n in result["notes"] if not 0 <= n["after_change_s"] < 1.0]
    ordered = sorted(steady)
    median_ms = ordered[len(ordered) // 2]
    return {
        "seconds_each": seconds_each,
        "peers_found_s": result["peers_found_s"],
        "notes": len(steady),
        "phase_median_ms": median_ms,  # JACK's transport latency to the listener, mostly
        "phase_around_median": _percentiles_ms([abs(e - median_ms) for e in steady]),
        "phase_abs": _percentiles_ms([abs(e) for e in steady]),
        "tempo_followed": bool(result["tempo_100"] and result["tempo_130"]),
        "folder": str(folder),
    }


def format_link(result: dict) -> str:
    around, absolute = result["phase_around_median"], result["phase_abs"]
    return "\n".join(
        [
            f"Link: livekomp's notes on the other peer's beat grid ({result['notes']} notes, "
            f"{result['seconds_each']:g} s at 100 then 130 BPM)",
            f"|error| p50 {absolute['p50_ms']:.3f} / p99 {absolute['p99_ms']:.3f} / max "
            f"{absolute['max_ms']:.3f} ms; median {result['phase_median_ms']:+.3f} ms (JACK "
            f"transport to the listener); around it p50 {around['p50_ms']:.3f} / p99 "
            f"{around['p99_ms']:.3f} ms",
        ]
    )


# -- rehearsal speed ---------------------------------------------------------------------------


def bench_rehearse(setlists: list[Path], repeats: int) -> list[dict]:
    """How much faster than real time each setlist renders (median of `repeats` runs)."""
    import logging
    import statistics
    import tempfile

    import mido

    from livekomp.inputs.setlist import load_setlist
    from livekomp.rehearsal import rehearse

    logging.disable(logging.INFO)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for path in setlists:
            setlist = load_setlist(path)
            times_s = []
            for _ in range(repeats):
                started_s = time.perf_counter()
                result = rehearse(setlist, folder)
                times_s.append(time.perf_counter() - started_s)
            music_s = mido.MidiFile(result.midi_path).length
            render_s = statistics.median(times_s)
            results.append(
                {
                    "setlist": path.name,
                    "bars": setlist.bars,
                    "music_s": music_s,
                    "render_ms": render_s * 1e3,
                    "faster_than_real_time": music_s / render_s,
                }
            )
    return results


def format_rehearse(results: list[dict]) -> str:
    lines = ["setlist              bars   music s   render ms   × real time"]
    lines += [
        f"{r['setlist']:<20} {r['bars']:>4} {r['music_s']:>9.1f} {r['render_ms']:>11.1f}"
        f" {r['faster_than_real_time']:>13.0f}"
        for r in results
    ]
    return "\n".join(lines)


# -- the voice ---------------------------------------------------------------------------------

VOICE_TEXTS = {
    "short": "And then, the sun.",
    "medium": "Before the light, there is only the long night.",
    "long": (
        "Grey at the edges, something stirs. The night lets go, slowly, one colour at a time. "
        "And when the morning comes, it comes all at once."
    ),
}


def bench_voice_offline(repeats: int) -> list[dict]:
    """Per backend and text: time to first audio (the first sentence rendered), the whole
    line's render time, its real-time factor (render time / audio length) and the cost of a
    cache hit, medians of `repeats` renders."""
    import logging
    import statistics

    from livekomp.voice.prosody import Prosody
    from livekomp.voice.text import clean_line
    from livekomp.voice.tts import Speaker, VoiceSpec, finish, load_backend

    logging.disable(logging.WARNING)
    results = []
    for name in ("piper", "espeak-ng"):
        started_s = time.perf_counter()
        backend = load_backend(name, VoiceSpec(name, None))
        load_s = time.perf_counter() - started_s
        for label, text in VOICE_TEXTS.items():
            sentences = clean_line(text)
            first_s, whole_s, hit_s = [], [], []
            duration_s = 0.0
            for i in range(repeats):
                prosody = Prosody(rate=1.0 + 0.001 * i)  # a new cache key each time
                started_s = time.perf_counter()
                samples, rate = backend.synthesize(sentences[0], prosody)
                finish(samples, rate, prosody.volume, 48_000)
                first_s.append(time.perf_counter() - started_s)
                speaker = Speaker([backend])
                started_s = time.perf_counter()
                speech = speaker.speak(sentences, prosody)
                whole_s.append(time.perf_counter() - started_s)
                duration_s = speech.duration_s
                started_s = time.perf_counter()
                speaker.speak(sentences, prosody)
                hit_s.append(time.perf_counter() - started_s)
            whole = statistics.median(whole_s)
            results.append(
                {
                    "backend": name,
                    "load_s": load_s,
                    "text": label,
                    "chars": len(text),
                    "sentences": len(sentences),
                    "audio_s": duration_s,
                    "first_audio_ms": statistics.median(first_s) * 1e3,
                    "render_ms": whole * 1e3,
                    "real_time_factor": whole / duration_s,
                    "cache_hit_us": statistics.median(hit_s) * 1e6,
                    "render_over_hit": whole / statistics.median(hit_s),
                }
            )
    return results


def format_voice_offline(results: list[dict]) -> str:
    lines = [
        "backend    text    chars audio s  first audio ms  render ms    RTF  cache hit µs"
        "  render/hit"
    ]
    lines += [
        f"{r['backend']:<10} {r['text']:<7} {r['chars']:>5} {r['audio_s']:>7.2f}"
        f" {r['first_audio_ms']:>15.1f} {r['render_ms']:>10.1f} {r['real_time_factor']:>6.3f}"
        f" {r['cache_hit_us']:>13.1f} {r['render_over_hit']:>11.0f}"
        for r in results
    ]
    loads = {r["backend"]: r["load_s"] for r in results}
    lines.append("load: " + ", ".join(f"{name} {s * 1e3:.0f} ms" for name, s in loads.items()))
    return "\n".join(lines)


def bench_voice_live(lines: int, bpm: float, voice: str) -> dict:
    """Run `livekomp serve --audio-out system` on the JACK server, send `lines` lines with
    oscsend at odd moments, and record the server's audio and MIDI clock with a JACK client.
    For each line: the time from the OSC message to the first audible sample (heard), split
    into rendering and waiting for the bar line (the server's own account, in its summary),
    and how far the heard start is from the bar line's first MIDI clock tick."""
    import random
    import socket
    import statistics
    import subprocess
    import tempfile

    import jack
    import numpy as np

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        osc_port = sock.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-voice-"))
    client = jack.Client(f"lkbenchvoice{os.getpid()}", no_start_server=True)
    rate = client.samplerate
    audio_in = client.inports.register("audio")
    midi_in = client.midi_inports.register("midi")
    blocks: list[tuple[int, np.ndarray]] = []
    midi: list[tuple[int, bytes]] = []

    @client.set_process_callback
    def process(frames: int) -> None:
        base = client.last_frame_time
        blocks.append((base, audio_in.get_array().copy()))
        for offset, data in midi_in.incoming_midi_events():
            midi.append((base + offset, bytes(data)))

    client.activate()
    summary_path = folder / "summary.json"
    sent: list[int] = []
    with (folder / "serve.log").open("w") as log:
        command = [sys.executable, "-m", "livekomp.cli", "serve", "--midi-api", "jack"]
        command += ["--bpm", str(bpm), "--osc-port", str(osc_port), "--audio-out", "system"]
        command += ["--voice", voice, "--no-responses", "--summary", str(summary_path)]
        serve = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 60
            while "listening for OSC" not in (folder / "serve.log").read_text():
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise RuntimeError(f"livekomp serve did not start; see {folder}")
                time.sleep(0.05)
            client.connect("livekomp:out", midi_in.name)
            audio_port = client.get_ports("PortAudio", is_audio=True, is_output=True)[0].name
            client.connect(audio_port, audio_in.name)
            chooser = random.Random(1)
            bar_s = 4 * 60 / bpm
            for i in range(lines):
                time.sleep(chooser.uniform(0.5, 1.5) * bar_s)
                sent.append(client.frame_time)
                text = list(VOICE_TEXTS.values())[i % 2] + f" Line {i + 1}."
                subprocess.run(["oscsend", "127.0.0.1", str(osc_port), "/livekomp/say", "s", text])
                time.sleep(3.5 * bar_s)  # past its bar line and its end
        finally:
            serve.terminate()
            serve.wait(timeout=20)
            client.deactivate()
            client.close()
    summary = json.loads(summary_path.read_text())
    spoken = [line for line in summary["lines"] if "backend" in line]
    first = blocks[0][0]
    audio = np.zeros(max(f + len(b) for f, b in blocks) - first, np.float32)
    for frame, block in blocks:
        audio[frame - first : frame - first + len(block)] = block
    ticks, started = [], False
    for frame, data in midi:
        if data[0] == 0xFA:
            started, ticks = True, []
        elif data[0] == 0xF8 and started:
            ticks.append(frame)
    # Number ticks by the grid, not by count: a cycle the Python recorder missed loses a tick.
    period = rate * 60 / (bpm * 24)  # the tempo asked for (`bench.py clock` checks it)
    bar_frames = [f for f in ticks if round((f - ticks[0]) / period) % 96 == 0]
    results = []
    for i, (sent_frame, line) in enumerate(zip(sent, spoken, strict=False)):
        end = sent[i + 1] if i + 1 < len(sent) else first + len(audio)
        window = np.abs(audio[sent_frame - first : end - first])
        loud = np.flatnonzero(window > 2e-3)
        if not len(loud):
            continue
        onset = sent_frame + int(loud[0])
        nearest = min(bar_frames, key=lambda f: abs(f - onset)) if bar_frames else onset
        results.append(
            {
                "say_to_heard_ms": (onset - sent_frame) / rate * 1e3,
                "render_ms": line["render_s"] * 1e3,
                "wait_for_bar_ms": line["wait_s"] * 1e3,
                "cached": line["cached"],
                "heard_minus_bar_line_ms": (onset - nearest) / rate * 1e3,
            }
        )

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in results]
        return {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }

    keys = ("say_to_heard_ms", "render_ms", "wait_for_bar_ms", "heard_minus_bar_line_ms")
    return {
        "bpm": bpm,
        "voice": voice,
        "lines": results,
        "summary": {key: stats(key) for key in keys} if results else {},
        "audio_out": summary.get("audio_out"),
    }


def format_voice_live(result: dict) -> str:
    out = [
        f"live: {len(result['lines'])} lines at {result['bpm']:g} BPM ({result['voice']}), "
        "/livekomp/say → first audible sample, heard by a JACK client"
    ]
    for key, label in (
        ("say_to_heard_ms", "say → heard"),
        ("render_ms", "  rendering"),
        ("wait_for_bar_ms", "  waiting for the bar line"),
        ("heard_minus_bar_line_ms", "heard − bar line's first clock tick"),
    ):
        s = result["summary"][key]
        out.append(
            f"{label:<36} median {s['median']:8.1f}  min {s['min']:8.1f}  max {s['max']:8.1f} ms"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser(
        "timing", help="sender process vs dispatcher thread vs trio: send-time error under load"
    )
    timing.add_argument("--events", type=int, default=2000, help="messages to send (>= 2)")
    timing.add_argument("--load-procs", type=int, default=2, help="busy background processes")
    timing.add_argument(
        "--load-threads", type=int, default=0, help="busy Python threads in this process (GIL)"
    )
    timing.add_argument(
        "--load",
        choices=["composer"],
        action="append",
        default=[],
        help="in-process load: 'composer' runs livekomp's RuleComposer in a thread (repeatable)",
    )
    timing.add_argument(
        "--trio-rt-priority", type=int, default=0, help="SCHED_FIFO priority for the trio thread"
    )
    timing.add_argument("--json", type=Path, help="also write the result here as JSON")
    clock = commands.add_parser(
        "clock", help="tempo of a live server's MIDI clock as a JACK receiver hears it"
    )
    clock.add_argument("--bpm", type=float, default=120.0)
    clock.add_argument("--seconds", type=float, default=12.0)
    clock.add_argument("--json", type=Path, help="also write the result here as JSON")
    follow = commands.add_parser(
        "follow", help="following a JACK MIDI clock master: tempo error, recovery, phase"
    )
    follow.add_argument("--tempi", type=float, nargs="+", default=[90.0, 140.0, 100.0])
    follow.add_argument("--bars-each", type=int, default=4)
    follow.add_argument(
        "--jitter-ms", type=float, default=1.0, help="master tick jitter, peak-to-peak"
    )
    follow.add_argument("--nudge-ms", type=float, default=0.0)
    follow.add_argument("--json", type=Path, help="also write the result here as JSON")
    link_parser = commands.add_parser(
        "link", help="Ableton Link: phase agreement with another peer (network namespace, root)"
    )
    link_parser.add_argument("--seconds-each", type=float, default=8.0)
    link_parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    rehearse_parser = commands.add_parser("rehearse", help="rehearsal speed against real time")
    rehearse_parser.add_argument(
        "setlists",
        type=Path,
        nargs="*",
        default=sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml")),
    )
    rehearse_parser.add_argument("--repeats", type=int, default=5)
    # The neural composer's benchmarks live in bench_models.py.
    tokens = commands.add_parser("tokens", help="melody model ms/token: recompute, cache, ONNX")
    tokens.add_argument("--context", type=int, default=40, help="notes before the bar")
    tokens.add_argument("--new", type=int, default=16, help="notes generated")
    tokens.add_argument("--repeats", type=int, default=5)
    bar = commands.add_parser("bar", help="one bar from all three models: p50/p99 per runtime")
    bar.add_argument("--bars", type=int, default=400)
    sweep = commands.add_parser("sweep", help="a live run while the XY pad sweeps the plane")
    sweep.add_argument("--minutes", type=float, default=5.0)
    sweep.add_argument("--bpm", type=float, default=120.0)
    sweep.add_argument("--style", help="also switch between base and this style adapter")
    sweep.add_argument("--adapters", type=Path, help="the style adapters folder")
    sweep.add_argument("--switch-every-s", type=float, default=4.3, help="seconds per switch")
    style = commands.add_parser(
        "style", help="style adapters: size, fine-tune time, unmerged vs merged, switching"
    )
    style.add_argument("--midi", type=Path, help="MIDI folder (default: a synthetic style corpus)")
    style.add_argument("--songs", type=int, default=14, help="songs in the synthetic corpus")
    style.add_argument("--repeats", type=int, default=5)
    style.add_argument("--bars", type=int, default=200)
    for model_parser in (tokens, bar, sweep, style):
        model_parser.add_argument("--checkpoints", help="checkpoints folder (default: shipped)")
        model_parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    voice = commands.add_parser(
        "voice", help="TTS: first audio, real-time factor, cache hits; live say → heard"
    )
    voice.add_argument("--repeats", type=int, default=5)
    voice.add_argument("--live-lines", type=int, default=6, help="0: skip the live run")
    voice.add_argument("--bpm", type=float, default=120.0)
    voice.add_argument("--voice", default="piper", choices=["piper", "espeak-ng"])
    voice.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args(argv)

    if args.command in ("tokens", "bar", "sweep", "style"):
        import bench_models

        result = bench_models.main(args.command, args)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    if args.command == "voice":
        offline = bench_voice_offline(args.repeats)
        print(format_voice_offline(offline))
        result: dict = {"offline": offline}
        if args.live_lines:
            result["live"] = bench_voice_live(args.live_lines, args.bpm, args.voice)
            print(format_voice_live(result["live"]))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    if args.command == "rehearse":
        print(format_rehearse(bench_rehearse(args.setlists, args.repeats)))
        return 0
    if args.command == "link":
        result = bench_link(args.seconds_each)
        print(format_link(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.command == "follow":
        result = bench_follow(args.tempi, args.bars_each, args.jitter_ms, args.nudge_ms)
        print(format_follow(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.command == "clock":
        result = bench_clock(args.bpm, args.seconds)
        print(format_clock(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    result = bench_timing(
        args.events,
        load_procs=args.load_procs,
        load_threads=args.load_threads,
        load_composers=args.load.count("composer"),
        trio_rt_priority=args.trio_rt_priority,
    )
    print(format_timing(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
