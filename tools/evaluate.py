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

Arrangement, bar by bar (`tools/arrangement.py`), per mood quadrant and overall: the share of bars
in the asked mode (key finding on the set's tonic, |valence| ≥ 0.4), the melody above the chords
and doubled by them, and the melody's repeated-pitch share, distinct pitches per 4 bars and notes
per bar against the interquartile range of held-out corpus phrases of the same proxy-mood quadrant.

A classifier two-sample test: a logistic regression on melody features (interval and contour
n-grams, durations, range) learns to tell 8-bar generated melodies from held-out corpus melodies of
8 bars; its accuracy on melodies it did not train on is the figure, 50 % meaning it cannot tell.
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
from tools import arrangement  # noqa: E402

VALENCES = (-0.9, -0.6, -0.3, 0.3, 0.6, 0.9)
AROUSALS = (-0.9, -0.5, 0.0, 0.5, 0.9)
CLEAR_VALENCE = 0.4  # bars are scored for mode where |valence| is at least this
SHAPE_FIGURES = ("repeated_share", "distinct_per_4_bars", "notes_per_bar")
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


def quadrant(valence: float, arousal: float) -> str:
    return f"{'happy' if valence > 0 else 'sad'}-{'excited' if arousal > 0 else 'calm'}"


def corpus_phrases(dataset: Path, limit: int) -> list[dict]:
    """Held-out corpus 4-bar phrases in 4/4 (bars of 48 ticks), with their proxy mood quadrant
    and shape figures; and their 8-bar melodies for the classifier."""
    records = list(data.read_records(dataset))
    stats = data.fit_proxy_stats(r for r in records if r["split"] == "train")
    phrases = []
    for record in records:
        if record["split"] != "test" or len(phrases) >= limit:
            continue
        bar_ticks = record["bar_ticks"]
        labels = data.bar_labels(record, stats)
        by_bar: dict[int, list] = {}
        for bar, onset, pitch, duration in record["notes"]:
            by_bar.setdefault(bar, []).append((onset, pitch, duration))
        for first in range(0, len(bar_ticks) - 3, 4):
            if any(bar_ticks[b] != 4 * tokens.TICKS_PER_QUARTER for b in range(first, first + 4)):
                continue
            melody = [
                ((b - first) * 4 + onset / tokens.TICKS_PER_QUARTER, pitch,
                 duration / tokens.TICKS_PER_QUARTER)
                for b in range(first, first + 4)
                for onset, pitch, duration in by_bar.get(b, [])
            ]  # fmt: skip
            if len(melody) < 2:
                continue
            valence = float(np.mean([v for v, _ in labels[first : first + 4]]))
            arousal = float(np.mean([a for _, a in labels[first : first + 4]]))
            phrases.append(
                {
                    "quadrant": quadrant(valence, arousal),
                    "melody": melody,
                    **arrangement.shape(melody, 4, 4),
                }
            )
    return phrases


def corpus_ranges(phrases: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per quadrant, each shape figure's interquartile range over the corpus phrases."""
    ranges: dict[str, dict[str, list[float]]] = {}
    for name in sorted({p["quadrant"] for p in phrases}):
        chosen = [p for p in phrases if p["quadrant"] == name]
        ranges[name] = {
            figure: [
                round(float(q), 3) for q in np.percentile([p[figure] for p in chosen], (25, 75))
            ]
            for figure in SHAPE_FIGURES
        }
        ranges[name]["phrases"] = [len(chosen)]
    return ranges


def melody_features(melody: list[tuple[float, int, float]]) -> np.ndarray:
    """What the two-sample classifier sees of an 8-bar melody: interval, contour-bigram and
    duration histograms (normalised), with notes per bar, range and repeated share."""
    pitches = [p for _, p, _ in sorted(melody)]
    intervals = [max(-7, min(7, b - a)) for a, b in itertools.pairwise(pitches)]
    contour = [int(np.sign(i)) + 1 for i in intervals]
    features = np.zeros(15 + 9 + len(tokens.DURATION_TICKS) + 3)
    for i in intervals:
        features[i + 7] += 1
    for a, b in itertools.pairwise(contour):
        features[15 + 3 * a + b] += 1
    for _, _, quarters in melody:
        index = tokens.duration_index(round(quarters * tokens.TICKS_PER_QUARTER))
        features[24 + index] += 1
    features[:15] /= max(1, len(intervals))
    features[15:24] /= max(1, len(contour) - 1)
    features[24:-3] /= max(1, len(melody))
    features[-3] = len(melody) / 8 / 8
    features[-2] = (max(pitches) - min(pitches)) / 24 if pitches else 0.0
    features[-1] = arrangement.repeated_share(melody)
    return features


def two_sample_accuracy(generated: list, reference: list, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression telling generated from corpus melodies (equal
    numbers of each, half of them held out); 0.5 means it cannot tell them apart."""
    import torch

    rng = np.random.default_rng(seed)
    n = min(len(generated), len(reference))
    rows = [melody_features(generated[i]) for i in rng.permutation(len(generated))[:n]]
    rows += [melody_features(reference[i]) for i in rng.permutation(len(reference))[:n]]
    x = torch.tensor(np.array(rows), dtype=torch.float32)
    y = torch.tensor([1.0] * n + [0.0] * n)
    order = torch.tensor(rng.permutation(2 * n))
    train, test = order[:n], order[n:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = model(x[train]).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[train])
        loss = loss + 1e-3 * model.weight.pow(2).sum()  # a little L2: no perfect separation
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = model(x[test]).squeeze(1) > 0
    return float((predicted == (y[test] > 0.5)).float().mean())


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
                melody = [(t, p, d) for t, p, d, _ in notes[Part.MELODY]]
                chords = [(t, p, d) for t, p, d, _ in notes[Part.CHORDS]]
                above, doubled = arrangement.melody_on_top(melody, chords)
                span = 4 * beats  # the corpus is measured in 4-bar phrases: so are these
                windows = [
                    arrangement.shape(
                        [n for n in melody if k * span <= n[0] < (k + 1) * span], beats, 4
                    )
                    for k in range(bars // 4)
                ]  # fmt: skip
                phrases.append(
                    {
                        "valence": valence,
                        "arousal": arousal,
                        "mode": mode,
                        "melody_mode": melody_mode,
                        "bar_modes": arrangement.bar_modes(
                            [(t, p, d) for t, p, d, _ in pitched], tonic, beats
                        ),
                        "above": above,
                        "doubled": doubled,
                        "windows": windows,
                        "density": len(pitched) / bars,
                        "melody_density": len(notes[Part.MELODY]) / bars,
                        "velocity": float(np.mean([v for *_, v in pitched])),
                        "melody": melody,
                    }
                )
    return phrases


def arrangement_figures(phrases: list[dict], ranges: dict) -> dict:
    """The bar-level figures of some phrases, and where their shape sits against the corpus's
    interquartile range for their quadrant (per figure: the phrases' median, and whether it is
    inside)."""
    clear = [p for p in phrases if abs(p["valence"]) >= CLEAR_VALENCE]
    in_mode = [
        m == ("major" if p["valence"] > 0 else "minor") for p in clear for m in p["bar_modes"]
    ]
    phrase_mode = [(p["mode"] == "major") == (p["valence"] > 0) for p in clear]
    figures: dict[str, object] = {
        "bars_in_mode": sum(in_mode) / len(in_mode) if in_mode else None,
        "phrases_in_mode": sum(phrase_mode) / len(phrase_mode) if phrase_mode else None,
        "melody_above_chords": float(np.mean([p["above"] for p in phrases])),
        "melody_doubled": float(np.mean([p["doubled"] for p in phrases])),
    }
    windows = [w for p in phrases for w in p["windows"]]
    names = {quadrant(p["valence"], p["arousal"]) for p in phrases}
    for figure in SHAPE_FIGURES:
        median = float(np.median([w[figure] for w in windows]))
        entry: dict[str, object] = {"median": round(median, 3)}
        if len(names) == 1 and (name := names.pop()) in ranges:
            low, high = ranges[name][figure]
            entry["corpus_iqr"] = [low, high]
            entry["inside"] = low <= median <= high
            names.add(name)
        figures[figure] = entry
    return figures


def score(phrases: list[dict], reference: list, ranges: dict, corpus_eights: list) -> dict:
    def share(key: str) -> float:
        right = [(p[key] == "major") == (p["valence"] > 0) for p in phrases]
        return sum(right) / len(right)

    arousal = [p["arousal"] for p in phrases]
    melodies = [p["melody"] for p in phrases]
    by_quadrant = {}
    for name in sorted({quadrant(p["valence"], p["arousal"]) for p in phrases}):
        chosen = [p for p in phrases if quadrant(p["valence"], p["arousal"]) == name]
        by_quadrant[name] = arrangement_figures(chosen, ranges)
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
        "arrangement": arrangement_figures(phrases, ranges),
        "arrangement_by_quadrant": by_quadrant,
        "two_sample_accuracy": two_sample_accuracy(melodies, corpus_eights)
        if corpus_eights
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", type=Path, default=ROOT / "cache" / "dataset" / "works.jsonl.gz"
    )
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--beats-per-bar", type=int, default=4)
    parser.add_argument("--reference-works", type=int, default=2000)
    parser.add_argument(
        "--composers", nargs="+", default=["neural", "rules"], choices=["neural", "rules"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "evaluation.json")
    args = parser.parse_args(argv)

    reference = corpus_melodies(args.dataset, args.reference_works)
    corpus = corpus_phrases(args.dataset, args.reference_works)
    ranges = corpus_ranges(corpus)
    # 8-bar corpus melodies for the classifier: two consecutive 4-bar phrases of one work
    corpus_eights = [
        a["melody"] + [(t + 16, p, d) for t, p, d in b["melody"]]
        for a, b in itertools.pairwise(corpus)
    ][::2]
    results: dict[str, object] = {
        "grid": {"valence": VALENCES, "arousal": AROUSALS},
        "seeds": args.seeds,
        "bars": args.bars,
        "beats_per_bar": args.beats_per_bar,
        "reference_melodies": len(reference),
        "dataset": str(
            args.dataset.relative_to(ROOT) if args.dataset.is_relative_to(ROOT) else args.dataset
        ),
        "corpus_phrases": len(corpus),
        "corpus_ranges": ranges,
    }
    for name in args.composers:
        settings = ComposerSettings(composer=name, device="cpu", checkpoints=str(args.checkpoints))
        phrases = compose_phrases(settings, args.seeds, args.bars, args.beats_per_bar)
        results[name] = score(phrases, reference, ranges, corpus_eights)
        print(name, json.dumps(results[name], indent=2), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
