"""Ableton Link: the phase of livekomp's notes on another Link peer's beat grid, in a network
namespace (root; the scenario is tools/link_scenario.py, which the Link test runs too).

    python -m tools.bench link [--seconds-each 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.bench.stats import percentiles_ms


def bench_link(seconds_each: float) -> dict:
    """livekomp and a second Link peer in a network namespace (root; see
    tools/link_scenario.py): the phase of livekomp's notes on the peer's beat timeline,
    heard on a JACK input, at 100 then 130 BPM (the first beat after the change aside)."""
    import subprocess
    import tempfile

    from tools.link_scenario import netns_command  # imports LinkPython-extern

    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-link-"))
    out = folder / "link.json"
    script = Path(__file__).resolve().parents[1] / "link_scenario.py"
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
        "phase_around_median": percentiles_ms([abs(e - median_ms) for e in steady]),
        "phase_abs": percentiles_ms([abs(e) for e in steady]),
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds-each", type=float, default=8.0)


def run(args: argparse.Namespace) -> dict:
    return bench_link(args.seconds_each)
