"""An OSC flood from an allowed and a denied source (tools/flood.py, in a network namespace;
root): the sender's lateness without a flood and with one, and where the datagrams went.

    python -m tools.bench flood [--count 1000000] [--rate-hz 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _scenario(folder: Path, name: str, args: argparse.Namespace, count: int) -> dict:
    from tools.link_scenario import netns_command

    out = folder / f"{name}.json"
    command = [sys.executable, "-m", "tools.flood", str(out), "--count", str(count)]
    command += ["--rate-hz", str(args.rate_hz), "--settle-s", str(args.settle_s)]
    subprocess.run(netns_command(command), timeout=600, check=True)
    result = json.loads(out.read_text())
    summary = result.pop("summary")
    result["inputs"] = summary["inputs"]["osc"]
    result["send_timing"] = summary["send_timing"]
    result["bars"] = len(summary["bars"])
    return result


def run(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-flood-"))
    return {
        "quiet": _scenario(folder, "quiet", args, 0),
        "flood": _scenario(folder, "flood", args, args.count),
        "folder": str(folder),
    }


def format_flood(result: dict) -> str:
    lines = []
    for name in ("quiet", "flood"):
        r, t, osc = result[name], result[name]["send_timing"], result[name]["inputs"]
        lines.append(
            f"{name}: {r['count_per_source']} datagrams per source in {r['flood_s']:.2f} s; "
            f"kernel dropped {r['kernel_dropped']}, denied {osc['denied']}, rate-limited "
            f"{osc['rate_limited']}, parsed {osc['received']}; sender late p50 "
            f"{t['p50_ms']:.3f} / p99 {t['p99_ms']:.3f} / max {t['max_ms']:.3f} ms "
            f"({t['count']} messages, {r['bars']} bars)"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=1_000_000, help="datagrams per source")
    parser.add_argument(
        "--rate-hz", type=float, default=0.0, help="per source (default 0: flat out)"
    )
    parser.add_argument("--settle-s", type=float, default=4.0, help="music before and after")
