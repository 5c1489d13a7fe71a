"""Rehearsal speed: how much faster than real time each setlist renders.

python -m tools.bench rehearse [SETLIST.toml ...] [--repeats 5]   # default: examples/*.toml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "setlists",
        type=Path,
        nargs="*",
        default=sorted((ROOT / "examples").glob("*.toml")),
    )
    parser.add_argument("--repeats", type=int, default=5)


def run(args: argparse.Namespace) -> list[dict]:
    return bench_rehearse(args.setlists, args.repeats)
