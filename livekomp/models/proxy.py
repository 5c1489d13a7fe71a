"""Proxy emotion labels for music that has none.

The training corpus (folk tunes, chorales, Palestrina) carries no valence or arousal labels, so
livekomp derives them per phrase (4 bars) from features that music psychology links to each
dimension, and says so in the model card. Nothing here is a listener's rating.

- **Valence** (sad ↔ happy) follows mode and harmonic colour (Hevner 1935; Gabrielsson & Lindström
  2010): major reads happier than minor. Half the label is the work's mode, three tenths the
  phrase's own key profile (Krumhansl–Kessler correlation with the best major key minus the best
  minor key, which catches modulations and modal colour), and two tenths the share of major minus
  minor/diminished chords under the phrase when chords are known (else the key profile again).
- **Arousal** (calm ↔ excited) follows event density, interval size and register (Gabrielsson &
  Lindström 2010; Schubert 2004): faster notes, wider leaps and higher pitches read more excited.
  Each feature is standardised against the training corpus (`ProxyStats`) and mixed 0.6 / 0.25 /
  0.15. The corpus has almost no tempo markings, so density is counted per quarter note; tempo is
  left to the performer.

Both labels go through tanh, so they live in -1..1 like the controls they are matched to.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from livekomp.music.theory import KRUMHANSL_KESSLER

PHRASE_BARS = 4
VALENCE_WEIGHTS = {"mode": 0.5, "profile": 0.3, "chords": 0.2}
AROUSAL_WEIGHTS = {"density": 0.6, "interval": 0.25, "register": 0.15}
PROFILE_GAIN = 4.0  # correlation differences are small numbers; this spreads them over tanh
AROUSAL_GAIN = 1.2


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Mean and spread of the arousal features over the training corpus."""

    density_mean: float = 2.0
    density_std: float = 0.8
    interval_mean: float = 2.6
    interval_std: float = 1.0
    register_mean: float = 69.0
    register_std: float = 4.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PhraseFeatures:
    density: float  # onsets per quarter note
    interval: float  # mean absolute interval, semitones
    register: float  # mean MIDI pitch
    profile: float  # best major minus best minor key correlation
    chords: float | None  # share of major minus minor/diminished chords, when known


def _correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    dx = [x - mx for x in xs]
    dy = [y - my for y in ys]
    spread = math.sqrt(sum(a * a for a in dx) * sum(b * b for b in dy))
    return sum(a * b for a, b in zip(dx, dy, strict=True)) / spread if spread else 0.0


def profile_difference(pitch_weights: Sequence[tuple[int, float]]) -> float:
    """Best major-key correlation minus best minor-key correlation of a pitch-class histogram."""
    histogram = [0.0] * 12
    for pitch, weight in pitch_weights:
        histogram[pitch % 12] += weight
    if sum(histogram) <= 0:
        return 0.0
    best = {}
    for quality, profile in KRUMHANSL_KESSLER.items():
        best[quality] = max(_correlation(histogram, profile[-t:] + profile[:-t]) for t in range(12))
    return best["major"] - best["minor"]


def phrase_features(
    notes: Sequence[Sequence[int]],
    quarters: float,
    chord_qualities: Sequence[int] = (),
) -> PhraseFeatures:
    """Features of one phrase: `notes` are [bar, onset_ticks, pitch, duration_ticks] rows.

    `chord_qualities` are 0 major, 1 minor, 2 diminished, for the chords under the phrase.
    """
    pitches = [n[2] for n in notes]
    intervals = [abs(b - a) for a, b in itertools.pairwise(pitches)]
    chords = None
    if chord_qualities:
        major = sum(1 for q in chord_qualities if q == 0)
        chords = (2 * major - len(chord_qualities)) / len(chord_qualities)
    return PhraseFeatures(
        density=len(notes) / max(quarters, 1e-9),
        interval=sum(intervals) / len(intervals) if intervals else 0.0,
        register=sum(pitches) / len(pitches) if pitches else 0.0,
        profile=profile_difference([(n[2], float(n[3])) for n in notes]),
        chords=chords,
    )


def valence(features: PhraseFeatures, mode: str) -> float:
    mode_sign = 1.0 if mode == "major" else -1.0
    profile = math.tanh(PROFILE_GAIN * features.profile)
    chords = features.chords if features.chords is not None else profile
    w = VALENCE_WEIGHTS
    return max(
        -1.0, min(1.0, w["mode"] * mode_sign + w["profile"] * profile + w["chords"] * chords)
    )


def arousal(features: PhraseFeatures, stats: ProxyStats) -> float:
    w = AROUSAL_WEIGHTS
    mix = (
        w["density"] * (features.density - stats.density_mean) / stats.density_std
        + w["interval"] * (features.interval - stats.interval_mean) / stats.interval_std
        + w["register"] * (features.register - stats.register_mean) / stats.register_std
    )
    return math.tanh(AROUSAL_GAIN * mix)


def phrases(bar_ticks: Sequence[int]) -> list[tuple[int, int]]:
    """[first_bar, end_bar) of each phrase: consecutive PHRASE_BARS-bar windows."""
    n = len(bar_ticks)
    return [(start, min(start + PHRASE_BARS, n)) for start in range(0, n, PHRASE_BARS)]


def by_bar(rows: Iterable[Sequence[int]]) -> dict[int, list[Sequence[int]]]:
    """Rows whose first field is their bar (notes, chords), grouped by bar."""
    grouped: dict[int, list[Sequence[int]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return grouped


def phrase_notes(
    notes: Sequence[Sequence[int]], bar_ticks: Sequence[int], ticks_per_quarter: int = 12
) -> Iterator[tuple[int, int, list[Sequence[int]], float]]:
    """(first_bar, end_bar, notes, length in quarters) of each phrase of a work."""
    grouped = by_bar(notes)
    for start, end in phrases(bar_ticks):
        rows = [n for bar in range(start, end) for n in grouped.get(bar, ())]
        yield start, end, rows, sum(bar_ticks[start:end]) / ticks_per_quarter


def label_work(
    notes: Sequence[Sequence[int]],
    bar_ticks: Sequence[int],
    mode: str,
    stats: ProxyStats,
    chords: Sequence[Sequence[int]] = (),
    ticks_per_quarter: int = 12,
) -> list[tuple[float, float]]:
    """(valence, arousal) for every bar of a work, each bar labelled with its phrase's values."""
    chords_by_bar = by_bar(chords)
    labels: list[tuple[float, float]] = []
    for start, end, rows, quarters in phrase_notes(notes, bar_ticks, ticks_per_quarter):
        qualities = [c[3] for bar in range(start, end) for c in chords_by_bar.get(bar, ())]
        if rows:
            features = phrase_features(rows, quarters, qualities)
            label = (valence(features, mode), arousal(features, stats))
        else:
            label = (0.0, -1.0)
        labels.extend([label] * (end - start))
    return labels


def fit_stats(feature_rows: Sequence[PhraseFeatures]) -> ProxyStats:
    """Standardisation constants from a corpus's phrases."""

    def mean_std(values: list[float]) -> tuple[float, float]:
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
        return mean, std

    dm, ds = mean_std([f.density for f in feature_rows])
    im, is_ = mean_std([f.interval for f in feature_rows])
    rm, rs = mean_std([f.register for f in feature_rows])
    return ProxyStats(dm, ds, im, is_, rm, rs)
