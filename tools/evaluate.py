"""Evaluate the composers: controllability by mood, and realism against held-out melodies.

    python tools/evaluate.py [--seeds 4] [--bars 8] [--out checkpoints/evaluation.json]

Controllability, for the neural and the rule-based composer alike: over a grid of valence ×
arousal, phrases are composed inline (as in rehearsal) and

- the key of each phrase is found with Krumhansl–Kessler key finding on its pitched notes
  (melody, chords and bass, weighted by duration); the mode is right when major goes with
  positive valence and minor with negative;
- Spearman's ρ between the requested arousal and each phrase's note density (pitched notes per
  bar) and mean velocity.

Realism: the melodies' pitch-interval and duration histograms against those of the held-out test
works of the corpus (Jensen–Shannon divergence, in bits; 0 is identical, 1 is disjoint).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekomp.composer import ComposerSettings, build_composer  # noqa: E402
from livekomp.models import data, tokens  # noqa: E402
from livekomp.music.phrase import BarRequest, Part  # noqa: E402
from livekomp.music.theory import detect_key  # noqa: E402

VALENCES = (-0.9, -0.6, -0.3, 0.3, 0.6, 0.9)
AROUSALS = (-0.9, -0.5, 0.0, 0.5, 0.9)
INTERVAL_RANGE = 12  # intervals beyond an octave are pooled at ±12


def ranks(values: list[float]) -> np.ndarray:
    """Ranks with ties averaged (for Spearman's ρ)."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    ranked = np.empty(len(array))
    ranked[order] = np.arange(len(array))
    for value in np.unique(array):
        tied = array == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(xs: list[float], ys: list[float]) -> float:
    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


def js_divergence(p: Counter, q: Counter) -> float:
    keys = sorted(set(p) | set(q))
    a = np.array([p[k] for k in keys], dtype=float)
    b = np.array([q[k] for k in keys], dtype=float)
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / y[mask])))

    return (kl(a, m) + kl(b, m)) / 2


def interval_histogram(melodies: list[list[tuple[float, int, float]]]) -> Counter:
    counts: Counter = Counter()
    for melody in melodies:
        pitches = [p for _, p, _ in melody]
        for a, b in itertools.pairwise(pitches):
            counts[max(-INTERVAL_RANGE, min(INTERVAL_RANGE, b - a))] += 1
    return counts


def duration_histogram(melodies: list[list[tuple[float, int, float]]]) -> Counter:
    counts: Counter = Counter()
    for melody in melodies:
        for _, _, quarters in melody:
            ticks = round(quarters * tokens.TICKS_PER_QUARTER)
            counts[tokens.DURATION_TICKS[tokens.duration_index(ticks)]] += 1
    return counts


def corpus_melodies(dataset: Path, limit: int) -> list[list[tuple[float, int, float]]]:
    """(onset_quarters, pitch, duration_quarters) melodies of the held-out test works."""
    melodies = []
    for record in data.read_records(dataset):
        if record["split"] != "test":
            continue
        starts = np.cumsum([0, *record["bar_ticks"]])
        melodies.append(
            [
                (
                    (starts[bar] + onset) / tokens.TICKS_PER_QUARTER,
                    pitch,
                    d / tokens.TICKS_PER_QUARTER,
                )
                for bar, onset, pitch, d in record["notes"]
            ]
        )
        if len(melodies) >= limit:
            break
    return melodies


def compose_phrases(settings: ComposerSettings, seeds: int, bars: int, beats: int) -> list[dict]:
    phrases = []
    for valence in VALENCES:
        for arousal in AROUSALS:
            for seed in range(seeds):
                composer, reason = build_composer(settings, seed)
                if reason:
                    raise SystemExit(f"{settings.composer}: {reason}")
                tonic = (seed * 5) % 12
                notes: dict[Part, list] = {part: [] for part in Part}
                for index in range(bars):
                    request = BarRequest(index, beats, tonic, valence, arousal)
                    bar = composer.compose_bar(request)
                    accept = getattr(composer, "accept", None)
                    if accept:
                        accept(request, bar)
                    for part, part_notes in bar.parts.items():
                        notes[part].extend(
                            (index * beats + n.start_beats, n.pitch, n.duration_beats, n.velocity)
                            for n in part_notes
                        )
                pitched = [n for part in (Part.MELODY, Part.CHORDS, Part.BASS) for n in notes[part]]
                _, mode, _ = detect_key((p, d) for _, p, d, _ in pitched)
                _, melody_mode, _ = detect_key((p, d) for _, p, d, _ in notes[Part.MELODY])
                phrases.append(
                    {
                        "valence": valence,
                        "arousal": arousal,
                        "mode": mode,
                        "melody_mode": melody_mode,
                        "density": len(pitched) / bars,
                        "melody_density": len(notes[Part.MELODY]) / bars,
                        "velocity": float(np.mean([v for *_, v in pitched])),
                        "melody": [(t, p, d) for t, p, d, _ in notes[Part.MELODY]],
                    }
                )
    return phrases


def score(phrases: list[dict], reference: list) -> dict:
    def share(key: str) -> float:
        right = [(p[key] == "major") == (p["valence"] > 0) for p in phrases]
        return sum(right) / len(right)

    arousal = [p["arousal"] for p in phrases]
    melodies = [p["melody"] for p in phrases]
    return {
        "phrases": len(phrases),
        "mode_accuracy": share("mode"),
        "melody_mode_accuracy": share("melody_mode"),
        "arousal_density_rho": spearman(arousal, [p["density"] for p in phrases]),
        "arousal_melody_density_rho": spearman(arousal, [p["melody_density"] for p in phrases]),
        "arousal_velocity_rho": spearman(arousal, [p["velocity"] for p in phrases]),
        "interval_js_bits": js_divergence(
            interval_histogram(melodies), interval_histogram(reference)
        ),
        "duration_js_bits": js_divergence(
            duration_histogram(melodies), duration_histogram(reference)
        ),
        "melody_notes_per_bar": float(np.mean([p["melody_density"] for p in phrases])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", type=Path, default=ROOT / "cache" / "dataset" / "works.jsonl.gz"
    )
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--beats-per-bar", type=int, default=4)
    parser.add_argument("--reference-works", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "evaluation.json")
    args = parser.parse_args(argv)

    reference = corpus_melodies(args.dataset, args.reference_works)
    results: dict[str, object] = {
        "grid": {"valence": VALENCES, "arousal": AROUSALS},
        "seeds": args.seeds,
        "bars": args.bars,
        "beats_per_bar": args.beats_per_bar,
        "reference_melodies": len(reference),
    }
    for name in ("neural", "rules"):
        settings = ComposerSettings(composer=name, device="cpu", checkpoints=str(args.checkpoints))
        phrases = compose_phrases(settings, args.seeds, args.bars, args.beats_per_bar)
        results[name] = score(phrases, reference)
        print(name, json.dumps(results[name], indent=2), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
