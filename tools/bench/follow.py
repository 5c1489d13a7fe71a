"""Following a JACK MIDI clock master: the tick filter's tempo error and recovery, the phase it
predicts, and the phase of a live server's notes against the master's ticks.

    python -m tools.bench follow [--tempi 90 140 100] [--bars-each 4] [--jitter-ms 1]
                                 [--nudge-ms 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import threading
import time
from pathlib import Path

from tools.beat_grid import note_positions, phase_errors_ms
from tools.bench.stats import percentiles_ms
from tools.peers import ClockMaster, MidiDump, Serve, connect, master_beats


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
        serve.wait_ready()
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
        "around_mean": percentiles_ms([abs(e - mean_ms) for e in prediction_ms]),
        "vs_ideal_mean_ms": ideal_mean_ms,
        "vs_ideal_around_mean": percentiles_ms([abs(e - ideal_mean_ms) for e in ideal_ms]),
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
        "phase_abs": percentiles_ms([abs(e) for e in steady]),
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tempi", type=float, nargs="+", default=[90.0, 140.0, 100.0])
    parser.add_argument("--bars-each", type=int, default=4)
    parser.add_argument(
        "--jitter-ms", type=float, default=1.0, help="master tick jitter, peak-to-peak"
    )
    parser.add_argument("--nudge-ms", type=float, default=0.0)


def run(args: argparse.Namespace) -> dict:
    return bench_follow(args.tempi, args.bars_each, args.jitter_ms, args.nudge_ms)
