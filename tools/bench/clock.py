"""The MIDI clock of a live server, heard by a third-party JACK receiver (jack_midi_dump).

python -m tools.bench clock [--bpm 120] [--seconds 12] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from livekomp.measure import summarize_ms
from tools.peers import Serve

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
    import subprocess
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-clock-"))
    dump_name = f"lkbench{os.getpid()}"
    with (folder / "dump.txt").open("w") as dump_out:
        dump = subprocess.Popen(
            ["stdbuf", "-oL", "jack_midi_dump", "-a", dump_name], stdout=dump_out
        )
        serve = Serve(folder, "--bpm", str(bpm), record=None)
        try:
            label = serve.port_label(timeout_s=30)
            subprocess.run(["jack_connect", label, f"{dump_name}:input"], check=True)
            time.sleep(seconds)
        finally:
            serve.stop(timeout_s=10)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--seconds", type=float, default=12.0)


def run(args: argparse.Namespace) -> dict:
    return bench_clock(args.bpm, args.seconds)
