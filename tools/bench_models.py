"""Benchmarks of the neural composer (run through tools/bench.py).

    python tools/bench.py tokens [--context 40] [--new 16] [--repeats 5]
    python tools/bench.py bar [--bars 400]
    python tools/bench.py sweep [--minutes 5] [--style NAME --adapters DIR [--switch-every-s 4.3]]
    python tools/bench.py style [--midi DIR] [--songs 14] [--repeats 5] [--bars 200]

`tokens`: the melody trunk's cost per generated note on one CPU thread, writing `new` notes after
a `context` of notes as the composer writes a bar — recomputing the whole context for every note
(naive) against the key/value cache, in torch (float and int8) and onnxruntime, all in the same
process on the same notes, with ratios against naive torch.

`bar`: one bar from all three models (melody, harmony, groove and the voicing), as the live
service asks for it, on one CPU thread: p50/p99 over bars in moods sweeping the plane, per runtime.

`style`: a style adapter fine-tuned with the defaults on a folder of MIDI (the tests' synthetic
pentatonic corpus unless --midi): trainable parameters and adapter size, fine-tune time, the
melody trunk's cost per note with the adapter unmerged (peft) against merged weights and the base,
and the cost of switching styles live — loading at start, and bars composed switching style every
bar against bars in one style.

`sweep`: a real live run. `livekomp serve` plays into JACK while an OSC client sweeps the XY pad
over the whole valence/arousal plane; afterwards its summary (composer outcomes, budget misses,
fresh latency) and its recording (bars without a note) are read back. With --style, the run
also switches between the base models and that style every few seconds over OSC.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from livekomp.measure import summarize_ms

ROOT = Path(__file__).resolve().parent.parent


def _token_sequence(total: int) -> tuple[np.ndarray, np.ndarray]:
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


def _cached_per_token(
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
    sequence, mood = _token_sequence(context + new)

    def naive(trunk) -> float:
        started = time.perf_counter()
        for t in range(context, context + new):
            trunk(sequence[:, : t + 1], mood[:, : t + 1], 3, trunk.empty())
        return (time.perf_counter() - started) / new

    def cached(trunk) -> float:
        return _cached_per_token(trunk, sequence, mood, context)

    def cached_steps_only(trunk) -> float:
        return _cached_per_token(trunk, sequence, mood, context, count_prefill=False)

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


def _time_bars(composer, bars: int, style_of=lambda index: "") -> tuple[dict, int]:
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
        entry, notes = _time_bars(composer, bars)
        entry["notes_per_bar"] = round(notes / bars, 2)
        result[composer.runtime] = entry
    return result


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
    if style is not None:
        command += ["--style", "base", "--style", style]
        if adapters is not None:
            command += ["--adapters", str(adapters)]
    switches = 0
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
                if style is not None and t >= (switches + 1) * switch_every_s:
                    switches += 1
                    client.send_message("/livekomp/style", [style if switches % 2 else "base"])
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
        result["switch_heard_after_s"] = _switch_delays((folder / "serve.log").read_text(), bpm)
    return result


def _switch_delays(log: str, bpm: float, lookahead_beats: float = 1.0) -> dict:
    """Seconds from each style switch (the router's "style → X from bar N" line) to bar N's first
    beat, read off the serve log's timestamps: bar N is logged when it is planned,
    `lookahead_beats` before it sounds."""
    from datetime import datetime

    def when(line: str) -> float:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    planned: dict[int, float] = {}
    switched: list[tuple[int, float]] = []
    for line in log.splitlines():
        if match := re.search(r"livekomp: bar +(\d+) \|", line):  # app._log_bar
            planned.setdefault(int(match.group(1)), when(line))
        elif match := re.search(r"style → \S+ from bar (\d+)", line):
            switched.append((int(match.group(1)), when(line)))
    delays = sorted(
        planned[bar] - at + lookahead_beats * 60.0 / bpm for bar, at in switched if bar in planned
    )
    if not delays:
        return {}
    return {
        "count": len(delays),
        "min": round(delays[0], 3),
        "p50": round(delays[len(delays) // 2], 3),
        "max": round(delays[-1], 3),
    }


def bench_style(
    checkpoints: Path,
    midi: Path | None = None,
    songs: int = 14,
    repeats: int = 5,
    bars: int = 200,
    context: int = 40,
    new: int = 16,
) -> dict:
    """Style adapters: size, fine-tune time, unmerged vs merged cost per note, switching cost."""
    import tempfile

    import torch

    from livekomp.models import checkpoint, lora
    from livekomp.models.finetune import FinetuneOptions, finetune
    from livekomp.models.neural import load_neural
    from livekomp.models.runtime import TorchTrunk

    torch.set_num_threads(1)
    result: dict[str, object] = {"threads": 1}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        if midi is None:
            from style_corpus import write_corpus  # tools/: the tests' pentatonic, dotted corpus

            midi = write_corpus(root / "midi", songs=songs)
            result["corpus"] = (
                f"synthetic: {songs} pentatonic, dotted tunes (tools/style_corpus.py)"
            )
        else:
            result["corpus"] = str(midi)
        started = time.perf_counter()
        info = finetune(
            FinetuneOptions(midi=midi, name="bench", device="cpu"),
            root / "adapters",
            checkpoints,
            progress=False,
            say=lambda line: None,
        )
        wall = time.perf_counter() - started
        notes = info.description["data"]["notes"]
        result["fine_tune"] = {
            "folder_notes": notes,
            "wall_s": round(wall, 2),
            "wall_s_per_1000_folder_notes": round(wall / (notes / 1000), 2),
        }
        for kind, facts in info.description["training"].items():
            entry = {
                "trainable_parameters": facts["trainable_parameters"],
                "of_base_parameters": checkpoint.read_description(kind, checkpoints)["parameters"],
                "adapter_bytes": info.description["bytes"][kind],
                "epochs": facts["epochs"],
                "steps": facts["steps"],
                "train_s": facts["seconds"],
                "held_out_loss_base": round(facts["held_out"]["base"]["loss"], 4),
                "held_out_loss_adapted": round(facts["held_out"]["adapted"]["loss"], 4),
            }
            if facts["train_notes_seen"]:
                entry["train_s_per_1000_notes_seen"] = round(
                    facts["seconds"] / (facts["train_notes_seen"] / 1000), 4
                )
            result[kind] = entry

        # Cost per generated note: the base, the style merged in, the adapter unmerged (peft).
        base = checkpoint.load("melody", checkpoints)
        sha = checkpoint.read_description("melody", checkpoints)["sha256"]
        sequence, mood = _token_sequence(context + new)
        trunks = {
            "base": TorchTrunk(base),
            "merged": TorchTrunk(lora.merged(info, "melody", base, sha)),
            "unmerged_peft": TorchTrunk(lora.inner(lora.load_adapter(info, "melody", base, sha))),
        }
        per_token = {}
        for name, trunk in trunks.items():
            _cached_per_token(trunk, sequence, mood, context)  # warm
            best = min(_cached_per_token(trunk, sequence, mood, context) for _ in range(repeats))
            per_token[name] = {"ms_per_token": round(best * 1e3, 4)}
        for entry in per_token.values():
            entry["vs_merged"] = round(
                entry["ms_per_token"] / per_token["merged"]["ms_per_token"], 2
            )
        result["per_token"] = {"context": context, "new": new, **per_token}

        # Switching live: loading the style at start, then bars that change style every bar
        # against bars that stay in one style, through the composer as the live service calls it.
        started = time.perf_counter()
        plain = load_neural(0, checkpoints, device="cpu")
        plain_s = time.perf_counter() - started
        started = time.perf_counter()
        composer = load_neural(
            0, checkpoints, device="cpu", styles=["bench"], adapters_dir=root / "adapters"
        )
        styled_s = time.perf_counter() - started
        del plain

        result["switch"] = {
            "load_ms_base": round(plain_s * 1e3, 1),
            "load_ms_base_plus_style": round(styled_s * 1e3, 1),
            "bar_ms_one_style": _time_bars(composer, bars, lambda index: "bench")[0],
            "bar_ms_switching_every_bar": _time_bars(
                composer, bars, lambda index: "bench" if index % 2 else ""
            )[0],
        }
    return result


def main(command: str, args) -> dict:
    checkpoints = Path(args.checkpoints) if args.checkpoints else ROOT / "checkpoints"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if command == "tokens":
        return bench_tokens(checkpoints, args.context, args.new, args.repeats)
    if command == "bar":
        return bench_bar(checkpoints, args.bars)
    if command == "style":
        return bench_style(checkpoints, args.midi, args.songs, args.repeats, args.bars)
    return bench_sweep(
        args.minutes,
        args.bpm,
        Path(args.checkpoints) if args.checkpoints else None,
        args.style,
        args.adapters,
        args.switch_every_s,
    )
