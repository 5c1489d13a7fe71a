"""The neural composer's cost: per generated note (`tokens`) and per bar (`bar`); the helpers
the style benchmark shares (a note sequence to time, the cached step, bars through the
composer); and what every model benchmark takes (`--checkpoints`, one thread).

    python -m tools.bench tokens [--context 40] [--new 16] [--repeats 5] [--checkpoints DIR]
                                 [--json FILE]
    python -m tools.bench bar [--bars 400] [--checkpoints DIR] [--json FILE]

`tokens`: the melody trunk's cost per generated note on one CPU thread, writing `new` notes after
a `context` of notes as the composer writes a bar — recomputing the whole context for every note
(naive) against the key/value cache, in torch (float and int8) and onnxruntime, all in the same
process on the same notes, with ratios against naive torch.

`bar`: one bar from all three models (melody, harmony, groove and the voicing), as the live
service asks for it, on one CPU thread: p50/p99 over bars in moods sweeping the plane, per runtime.

Both print their result as JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from livekomp.measure import summarize_ms

ROOT = Path(__file__).resolve().parents[2]


def add_checkpoints_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", help="checkpoints folder (default: shipped)")


def checkpoints_folder(args: argparse.Namespace) -> Path:
    """`--checkpoints`, else the shipped ones."""
    return Path(args.checkpoints) if args.checkpoints else ROOT / "checkpoints"


def one_thread() -> None:
    """OpenMP on one thread, here and in the processes started from here (the sweep's
    server), as every model benchmark runs."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def token_sequence(total: int) -> tuple[np.ndarray, np.ndarray]:
    """A plausible note sequence (steps, moods) for timing the melody trunk."""
    rng = np.random.default_rng(0)
    sequence = np.stack(
        [
            rng.integers(0, 48, total),  # onsets early in a bar: a plausible sequence's range
            rng.integers(20, 40, total),
            rng.integers(2, 10, total),
        ],
        axis=-1,
    )[None].astype(np.int64)
    return sequence, np.zeros((1, total, 2), dtype=np.float32)


def cached_per_token(
    trunk, sequence: np.ndarray, mood: np.ndarray, context: int, *, count_prefill: bool = True
) -> float:
    """Seconds per note written with the key/value cache after `context` notes; with
    `count_prefill` the context's prefill is shared out over the notes written after it."""
    new = sequence.shape[1] - context
    started = time.perf_counter()
    _, cache = trunk(sequence[:, :context], mood[:, :context], 3, trunk.empty())
    if not count_prefill:
        started = time.perf_counter()
    for t in range(context, context + new):
        _, cache = trunk(sequence[:, t : t + 1], mood[:, t : t + 1], 3, cache)
    return (time.perf_counter() - started) / new


def bench_tokens(checkpoints: Path, context: int = 40, new: int = 16, repeats: int = 5) -> dict:
    """Generate `new` notes after a `context` of notes, as the composer does for a bar."""
    import torch

    from livekomp.models import checkpoint
    from livekomp.models.runtime import OnnxTrunk, TorchTrunk, onnx_path

    torch.set_num_threads(1)
    model = checkpoint.load("melody", checkpoints)
    sequence, mood = token_sequence(context + new)

    def naive(trunk) -> float:
        started = time.perf_counter()
        for t in range(context, context + new):
            trunk(sequence[:, : t + 1], mood[:, : t + 1], 3, trunk.empty())
        return (time.perf_counter() - started) / new

    def cached(trunk) -> float:
        return cached_per_token(trunk, sequence, mood, context)

    def cached_steps_only(trunk) -> float:
        return cached_per_token(trunk, sequence, mood, context, count_prefill=False)

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


def time_bars(composer, bars: int, style_of=lambda index: "") -> tuple[dict, int]:
    """Compose `bars` bars as the live service asks for them, the mood on a Lissajous sweep of
    the plane; returns the compose times (the first 10 bars, filling the context, left out) and
    the notes written."""
    from livekomp.music.phrase import BarRequest

    times_s, notes = [], 0
    for index in range(bars):
        angle = 2 * math.pi * index / 64
        request = BarRequest(
            index, 4, 2, math.cos(angle), math.sin(1.5 * angle + 0.3), style=style_of(index)
        )
        started = time.perf_counter()
        bar = composer.compose_bar(request)
        times_s.append(time.perf_counter() - started)
        composer.accept(request, bar)
        notes += sum(len(n) for n in bar.parts.values())
    return summarize_ms(times_s[10:]), notes


def bench_bar(checkpoints: Path, bars: int = 400) -> dict:
    from livekomp.models.neural import load_neural

    result: dict[str, object] = {"bars": bars, "threads": 1}
    for runtime, int8 in (("torch", False), ("torch", True), ("onnx", False)):
        composer = load_neural(0, checkpoints, device="cpu", runtime=runtime, quantize=int8)
        entry, notes = time_bars(composer, bars)
        entry["notes_per_bar"] = round(notes / bars, 2)
        result[composer.runtime] = entry
    return result


def add_tokens_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context", type=int, default=40, help="notes before the bar")
    parser.add_argument("--new", type=int, default=16, help="notes generated")
    parser.add_argument("--repeats", type=int, default=5)
    add_checkpoints_argument(parser)


def run_tokens(args: argparse.Namespace) -> dict:
    one_thread()
    return bench_tokens(checkpoints_folder(args), args.context, args.new, args.repeats)


def add_bar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bars", type=int, default=400)
    add_checkpoints_argument(parser)


def run_bar(args: argparse.Namespace) -> dict:
    one_thread()
    return bench_bar(checkpoints_folder(args), args.bars)
