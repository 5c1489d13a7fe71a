"""Style adapters: what one costs to make, to keep, to play and to switch to.

    python -m tools.bench style [--midi DIR] [--songs 14] [--repeats 5] [--bars 200]
                                [--checkpoints DIR] [--json FILE]

`style`: a style adapter fine-tuned with the defaults on a folder of MIDI (the tests' synthetic
pentatonic corpus unless --midi): trainable parameters and adapter size, fine-tune time, the
melody trunk's cost per note with the adapter unmerged (peft) against merged weights and the base,
and the cost of switching styles live — loading at start, and bars composed switching style every
bar against bars in one style. Prints its result as JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tools.bench.models import (
    add_checkpoints_argument,
    cached_per_token,
    checkpoints_folder,
    one_thread,
    time_bars,
    token_sequence,
)


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
            from tools.style_corpus import write_corpus  # the tests' pentatonic, dotted corpus

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
        sequence, mood = token_sequence(context + new)
        trunks = {
            "base": TorchTrunk(base),
            "merged": TorchTrunk(lora.merged(info, "melody", base, sha)),
            "unmerged_peft": TorchTrunk(lora.inner(lora.load_adapter(info, "melody", base, sha))),
        }
        per_token = {}
        for name, trunk in trunks.items():
            cached_per_token(trunk, sequence, mood, context)  # warm
            best = min(cached_per_token(trunk, sequence, mood, context) for _ in range(repeats))
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
            "bar_ms_one_style": time_bars(composer, bars, lambda index: "bench")[0],
            "bar_ms_switching_every_bar": time_bars(
                composer, bars, lambda index: "bench" if index % 2 else ""
            )[0],
        }
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midi", type=Path, help="MIDI folder (default: a synthetic style corpus)")
    parser.add_argument("--songs", type=int, default=14, help="songs in the synthetic corpus")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bars", type=int, default=200)
    add_checkpoints_argument(parser)


def run(args: argparse.Namespace) -> dict:
    one_thread()
    return bench_style(checkpoints_folder(args), args.midi, args.songs, args.repeats, args.bars)
