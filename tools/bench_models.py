"""Benchmarks of the neural composer (run through tools/bench.py).

    python tools/bench.py tokens [--context 40] [--new 16] [--repeats 5]
    python tools/bench.py bar [--bars 400]
    python tools/bench.py sweep [--minutes 5]

`tokens`: the melody trunk's cost per generated note on one CPU thread, writing `new` notes after
a `context` of notes as the composer writes a bar — recomputing the whole context for every note
(naive) against the key/value cache, in torch (float and int8) and onnxruntime, all in the same
process on the same notes, with ratios against naive torch.

`bar`: one bar from all three models (melody, harmony, groove and the voicing), as the live
service asks for it, on one CPU thread: p50/p99 over bars in moods sweeping the plane, per runtime.

`sweep`: a real live run. `livekomp serve` plays into JACK while an OSC client sweeps the XY pad
over the whole valence/arousal plane; afterwards its summary (composer outcomes, budget misses,
fresh latency) and its recording (bars without a note) are read back.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from livekomp.measure import summarize_ms

ROOT = Path(__file__).resolve().parent.parent


def bench_tokens(checkpoints: Path, context: int = 40, new: int = 16, repeats: int = 5) -> dict:
    """Generate `new` notes after a `context` of notes, as the composer does for a bar."""
    import torch

    from livekomp.models import checkpoint
    from livekomp.models.runtime import OnnxTrunk, TorchTrunk, onnx_path

    torch.set_num_threads(1)
    model = checkpoint.load("melody", checkpoints)
    total = context + new
    rng = np.random.default_rng(0)
    sequence = np.stack(
        [
            rng.integers(0, 48, total),  # onsets early in a bar: a plausible sequence's range
            rng.integers(20, 40, total),
            rng.integers(2, 10, total),
        ],
        axis=-1,
    )[None].astype(np.int64)
    mood = np.zeros((1, total, 2), dtype=np.float32)

    def naive(trunk) -> float:
        started = time.perf_counter()
        for t in range(context, total):
            trunk(sequence[:, : t + 1], mood[:, : t + 1], 3, trunk.empty())
        return (time.perf_counter() - started) / new

    def cached(trunk) -> float:
        """Per note, the prefill of the context shared out over the notes written after it."""
        started = time.perf_counter()
        _, cache = trunk(sequence[:, :context], mood[:, :context], 3, trunk.empty())
        for t in range(context, total):
            _, cache = trunk(sequence[:, t : t + 1], mood[:, t : t + 1], 3, cache)
        return (time.perf_counter() - started) / new

    def cached_steps_only(trunk) -> float:
        """Per note, the cached steps alone (the prefill not counted)."""
        _, prefilled = trunk(sequence[:, :context], mood[:, :context], 3, trunk.empty())
        started = time.perf_counter()
        cache = prefilled
        for t in range(context, total):
            _, cache = trunk(sequence[:, t : t + 1], mood[:, t : t + 1], 3, cache)
        return (time.perf_counter() - started) / new

    int8 = TorchTrunk(model, quantize=True)  # quantize_dynamic works on a copy
    runs = {
        "naive_recompute_torch": (naive, TorchTrunk(model)),
        "kv_cache_torch": (cached, TorchTrunk(model)),
        "kv_cache_torch_steps_only": (cached_steps_only, TorchTrunk(model)),
        "kv_cache_torch_int8": (cached, int8),
        "naive_recompute_onnxruntime": (naive, OnnxTrunk(model, onnx_path(checkpoints))),
        "kv_cache_onnxruntime": (cached, OnnxTrunk(model, onnx_path(checkpoints))),
        "kv_cache_onnxruntime_steps_only": (
            cached_steps_only,
            OnnxTrunk(model, onnx_path(checkpoints)),
        ),
    }
    result: dict[str, object] = {"context": context, "new": new, "repeats": repeats, "threads": 1}
    for name, (how, trunk) in runs.items():
        how(trunk)  # warm
        best = min(how(trunk) for _ in range(repeats))
        result[name] = {"ms_per_token": round(best * 1e3, 4)}
    base = result["naive_recompute_torch"]["ms_per_token"]  # type: ignore[index]
    for name in runs:
        entry = result[name]
        entry["speedup_vs_naive"] = round(base / entry["ms_per_token"], 2)  # type: ignore[index]
    return result


def bench_bar(checkpoints: Path, bars: int = 400) -> dict:
    from livekomp.models.neural import load_neural
    from livekomp.music.phrase import BarRequest

    result: dict[str, object] = {"bars": bars, "threads": 1}
    for runtime, int8 in (("torch", False), ("torch", True), ("onnx", False)):
        composer = load_neural(0, checkpoints, device="cpu", runtime=runtime, quantize=int8)
        times_s, notes = [], 0
        for index in range(bars):
            angle = 2 * math.pi * index / 64
            request = BarRequest(
                index, 4, 2, math.cos(angle), math.sin(1.5 * angle + 0.3)
            )  # a Lissajous sweep of the plane
            started = time.perf_counter()
            bar = composer.compose_bar(request)
            times_s.append(time.perf_counter() - started)
            composer.accept(request, bar)
            notes += sum(len(n) for n in bar.parts.values())
        entry = summarize_ms(times_s[10:])  # the first bars fill the context
        entry["notes_per_bar"] = round(notes / bars, 2)
        result[composer.runtime] = entry
    return result


def bench_sweep(minutes: float, bpm: float = 120.0, checkpoints: Path | None = None) -> dict:
    """A live run with the XY pad sweeping the plane; see the module docstring."""
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    import mido
    from pythonosc.udp_client import SimpleUDPClient

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        osc_port = sock.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-sweep-"))
    command = [
        sys.executable,
        "-m",
        "livekomp.cli",
        "serve",
        "--midi-api",
        "jack",
        "--osc-port",
        str(osc_port),
        "--bpm",
        str(bpm),
        "--rt-priority",
        "0",
        "--record",
        str(folder / "sweep.mid"),
        "--summary",
        str(folder / "summary.json"),
    ]
    if checkpoints is not None:
        command += ["--checkpoints", str(checkpoints)]
    with (folder / "serve.log").open("w") as log:
        serve = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while "listening for OSC" not in (folder / "serve.log").read_text():
                if serve.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start: {(folder / 'serve.log').read_text()}")
                time.sleep(0.1)
            client = SimpleUDPClient("127.0.0.1", osc_port)
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
                time.sleep(0.05)
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(timeout=30)
    summary = json.loads((folder / "summary.json").read_text())
    midi = mido.MidiFile(folder / "sweep.mid")
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
    return {
        "minutes": minutes,
        "bpm": bpm,
        "xy_messages": sent,
        "bars_played": played,
        "bars_without_notes": len(silent),
        "composer": summary.get("composer"),
        "folder": str(folder),
    }


def main(command: str, args) -> dict:
    checkpoints = Path(args.checkpoints) if args.checkpoints else ROOT / "checkpoints"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if command == "tokens":
        return bench_tokens(checkpoints, args.context, args.new, args.repeats)
    if command == "bar":
        return bench_bar(checkpoints, args.bars)
    return bench_sweep(args.minutes, args.bpm, Path(args.checkpoints) if args.checkpoints else None)
