"""A real live run with the XY pad sweeping the whole valence/arousal plane.

    python -m tools.bench sweep [--minutes 5] [--bpm 120] [--checkpoints DIR]
                                [--style NAME --adapters DIR [--switch-every-s 4.3]] [--json FILE]

`livekomp serve` plays into JACK while an OSC client sweeps the XY pad over the whole
valence/arousal plane; afterwards its summary (composer outcomes, budget misses, fresh latency)
and its recording (bars without a note) are read back. With --style, the run also switches
between the base models and that style every few seconds over OSC, and the summary's record of
each switch says how long after it was asked for it was heard. Prints its result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from tools.bench.models import add_checkpoints_argument, one_thread
from tools.peers import Serve


def bench_sweep(
    minutes: float,
    bpm: float = 120.0,
    checkpoints: Path | None = None,
    style: str | None = None,
    adapters: Path | None = None,
    switch_every_s: float = 4.3,
) -> dict:
    """A live run with the XY pad sweeping the plane; see the module docstring. With `style`,
    the run also switches between the base models and that style every `switch_every_s` seconds
    (a period that drifts against the bar line), as a performer would per scene."""
    import signal
    import tempfile

    import mido
    from pythonosc.udp_client import SimpleUDPClient

    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-sweep-"))
    args = ["--bpm", str(bpm), "--rt-priority", "0"]
    if checkpoints is not None:
        args += ["--checkpoints", str(checkpoints)]
    if style is not None:
        args += ["--style", "base", "--style", style]
        if adapters is not None:
            args += ["--adapters", str(adapters)]
    switches = 0
    serve = Serve(folder, *args, record="sweep.mid")
    try:
        serve.wait_ready(timeout_s=60)
        client = SimpleUDPClient("127.0.0.1", serve.osc_port)
        client.send_message("/livekomp/start", [])
        started = time.monotonic()
        end = started + minutes * 60
        sent = 0
        while (now := time.monotonic()) < end:
            t = now - started
            # x and y at incommensurate rates: the path covers the whole plane in minutes.
            x = 0.5 + 0.5 * math.sin(2 * math.pi * t / 37.0)
            y = 0.5 + 0.5 * math.sin(2 * math.pi * t / 23.0 + 1.0)
            client.send_message("/livekomp/xy", [x, y])
            sent += 1
            if style is not None and t >= (switches + 1) * switch_every_s:
                switches += 1
                client.send_message("/livekomp/style", [style if switches % 2 else "base"])
            time.sleep(0.05)
    finally:
        serve.stop(signal.SIGINT, timeout_s=30)
    summary = json.loads(serve.summary_path.read_text())
    midi = mido.MidiFile(serve.record_path)
    beats_per_bar = summary.get("beats_per_bar", 4)
    bars_with_notes: set[int] = set()
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                bars_with_notes.add(int(tick / midi.ticks_per_beat // beats_per_bar))
    played = summary["totals"]["bars"] if "totals" in summary else None
    silent = [b for b in range(max(bars_with_notes, default=-1) + 1) if b not in bars_with_notes]
    result = {
        "minutes": minutes,
        "bpm": bpm,
        "xy_messages": sent,
        "bars_played": played,
        "bars_without_notes": len(silent),
        "composer": summary.get("composer"),
        "folder": str(folder),
    }
    if style is not None:
        result["style_messages"] = switches
        result["bars_by_style"] = summary["totals"].get("bars_by_style")
        result["switch_heard_after_s"] = _switch_delays(summary, bpm)
    return result


def _switch_delays(summary: dict, bpm: float) -> dict:
    """Seconds from each style switch to the first beat of the bar it plays from, for the bars
    that were played, from the summary's `styles_switched` (the clock's beat when the switch
    was asked for, and the bar). One take from a stopped clock at one tempo, as here: bar N
    starts on beat N × beats per bar."""
    beats_per_bar = summary.get("beats_per_bar", 4)
    played = summary.get("totals", {}).get("bars", 0)
    delays = sorted(
        (switch["from_bar"] * beats_per_bar - switch["at_beat"]) * 60.0 / bpm
        for switch in summary.get("styles_switched", [])
        if switch["at_beat"] is not None and switch["from_bar"] < played
    )
    if not delays:
        return {}
    return {
        "count": len(delays),
        "min": round(delays[0], 3),
        "p50": round(delays[len(delays) // 2], 3),
        "max": round(delays[-1], 3),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--style", help="also switch between base and this style adapter")
    parser.add_argument("--adapters", type=Path, help="the style adapters folder")
    parser.add_argument("--switch-every-s", type=float, default=4.3, help="seconds per switch")
    add_checkpoints_argument(parser)


def run(args: argparse.Namespace) -> dict:
    one_thread()
    return bench_sweep(
        args.minutes,
        args.bpm,
        Path(args.checkpoints) if args.checkpoints else None,
        args.style,
        args.adapters,
        args.switch_every_s,
    )
