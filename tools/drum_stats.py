"""Measure the drums against the groove, for the neural composer and the rule-based one.

    python tools/drum_stats.py [--seeds 3] [--bars 8] [--beats-per-bar 4] [--json FILE]
                               [--style NAME --adapters DIR]

Over a grid of valence × arousal (−0.8 … 0.8 each) and a few seeds, phrases are composed inline
(as in rehearsal, each bar accepted before the next) and for each composer it reports:

- drum notes per bar, by arousal, and Spearman's ρ between arousal and each phrase's drum notes
  per bar;
- the share of kicks on accent steps: steps where the shipped groove predictor, asked for the
  bar's mood and metre with the bar before as the composer played it, expects a longer note than
  the bar's mean (above mean), or one of the bar's top quarter of steps by accent. The rule
  composer's kicks are scored against the same predictor, as a baseline: its tables put kicks on
  strong beats without asking the model.

With --style, the style adapter's groove alone (the base melody under both) plays against the
base groove from the same history (each bar the style's, accepted): where in the beat the hats
and kicks fall (shares of the sixteenths 0–3 of a beat), so the adapter's groove is heard.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekomp.models import checkpoint, lora, tokens  # noqa: E402
from livekomp.models.groove import STEPS, STEPS_PER_QUARTER, GroovePredictor  # noqa: E402
from livekomp.models.neural import NeuralComposer  # noqa: E402
from livekomp.models.runtime import TorchTrunk  # noqa: E402
from livekomp.music.drums import Drum  # noqa: E402
from livekomp.music.phrase import BASE_STYLE, BarRequest, ComposedBar, Part  # noqa: E402
from livekomp.music.rules import RuleComposer  # noqa: E402
from tools.evaluate import spearman  # noqa: E402

GRID = (-0.8, -0.4, 0.0, 0.4, 0.8)


def played_onsets(bar: ComposedBar) -> list[float]:
    """The chord onsets of a played bar on the sixteenth grid: the groove model's 'bar before'
    (as NeuralComposer.accept keeps it)."""
    grid = [0.0] * STEPS
    for note in bar.parts.get(Part.CHORDS, ()):
        step = round(note.start_beats * STEPS_PER_QUARTER)
        if step < STEPS:
            grid[step] = 1.0
    return grid


@torch.inference_mode()
def accents_for(groove: GroovePredictor, request: BarRequest, previous: list[float]) -> np.ndarray:
    metre = tokens.metre_index(request.beats_per_bar * tokens.TICKS_PER_QUARTER)
    _, accents = groove(
        torch.tensor([[request.valence, request.arousal]]),
        torch.tensor([metre]),
        torch.tensor([previous]),
    )
    return accents[0].numpy()[: request.beats_per_bar * STEPS_PER_QUARTER]


def phrase_figures(
    composer, groove: GroovePredictor, valence: float, arousal: float, bars: int, beats: int
) -> dict[str, float]:
    previous = [0.0] * STEPS
    notes = kicks = above_mean = top_quarter = 0
    for index in range(bars):
        request = BarRequest(index, beats, 2, valence, arousal)
        bar = composer.compose_bar(request)
        accept = getattr(composer, "accept", None)
        if accept:
            accept(request, bar)
        accents = accents_for(groove, request, previous)
        previous = played_onsets(bar)
        top = set(np.argsort(-accents, kind="stable")[: max(1, len(accents) // 4)].tolist())
        drums = bar.parts[Part.DRUMS]
        notes += len(drums)
        for note in drums:
            if note.pitch != Drum.KICK:
                continue
            step = round(note.start_beats * STEPS_PER_QUARTER)
            kicks += 1
            above_mean += accents[step] > accents.mean()
            top_quarter += step in top
    return {
        "notes_per_bar": notes / bars,
        "kicks": kicks,
        "kicks_above_mean": int(above_mean),
        "kicks_top_quarter": int(top_quarter),
    }


def summarize(phrases: list[dict]) -> dict[str, object]:
    kicks = sum(p["kicks"] for p in phrases)
    return {
        "notes_per_bar_by_arousal": {
            str(a): float(np.mean([p["notes_per_bar"] for p in phrases if p["arousal"] == a]))
            for a in GRID
        },
        "arousal_drum_density_rho": spearman(
            [p["arousal"] for p in phrases], [p["notes_per_bar"] for p in phrases]
        ),
        "kicks": kicks,
        "kicks_on_above_mean_accents": sum(p["kicks_above_mean"] for p in phrases) / kicks,
        "kicks_on_top_quarter_accents": sum(p["kicks_top_quarter"] for p in phrases) / kicks,
    }


def style_figures(make_composer, seeds: int, bars: int, beats: int) -> dict[str, object]:
    """Hats and kicks by sixteenth of the beat, base groove against the style's, mid-mood."""
    hits: dict[str, list[tuple[int, int]]] = {BASE_STYLE: [], "style": []}  # (step, drum)
    for seed in range(seeds):
        composer = make_composer(seed)
        for index in range(bars):
            for style in hits:
                request = BarRequest(index, beats, 2, 0.4, 0.2, style=style)
                bar = composer.compose_bar(request)
                hits[style] += [
                    (round(n.start_beats * STEPS_PER_QUARTER), n.pitch)
                    for n in bar.parts[Part.DRUMS]
                ]
            composer.accept(request, bar)

    def by_sixteenth(style: str, drums: set[int]) -> list[float]:
        steps = [step % STEPS_PER_QUARTER for step, drum in hits[style] if drum in drums]
        return [steps.count(i) / max(len(steps), 1) for i in range(STEPS_PER_QUARTER)]

    return {
        style: {
            "notes_per_bar": len(hits[style]) / (seeds * bars),
            "hats_by_sixteenth": by_sixteenth(style, {Drum.CLOSED_HAT, Drum.OPEN_HAT}),
            "kicks_by_sixteenth": by_sixteenth(style, {Drum.KICK}),
        }
        for style in hits
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=checkpoint.DEFAULT_DIR)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--beats-per-bar", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--style", help="also play this style adapter's groove against the base")
    parser.add_argument("--adapters", type=Path, default=Path("adapters"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    melody = checkpoint.load("melody", args.checkpoints)
    harmony = checkpoint.load("harmony", args.checkpoints)
    groove = checkpoint.load("groove", args.checkpoints).eval()
    trunk = TorchTrunk(melody)
    makers = {
        "neural": lambda seed: NeuralComposer(melody, harmony, groove, trunk, seed),
        "rules": RuleComposer,
    }
    result: dict[str, object] = {
        "grid": {"valence": GRID, "arousal": GRID},
        "seeds": args.seeds,
        "bars": args.bars,
        "beats_per_bar": args.beats_per_bar,
    }
    for name, make in makers.items():
        phrases = [
            {
                "arousal": arousal,
                **phrase_figures(
                    make(seed), groove, valence, arousal, args.bars, args.beats_per_bar
                ),
            }
            for valence in GRID
            for arousal in GRID
            for seed in range(args.seeds)
        ]
        result[name] = summarize(phrases)
    if args.style:
        info = lora.read_style(args.style, args.adapters)
        sha = checkpoint.read_description("groove", args.checkpoints)["sha256"]
        styled = lora.merged(info, "groove", groove, sha)

        def make_styled(seed: int) -> NeuralComposer:
            composer = NeuralComposer(melody, harmony, groove, trunk, seed)
            composer.add_style("style", melody, trunk, styled)
            return composer

        result[f"style {args.style}"] = style_figures(
            make_styled, args.seeds, 2 * args.bars, args.beats_per_bar
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
