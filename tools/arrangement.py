"""Arrangement figures of composed music, bar by bar: what a listener hears first.

- **Mode per bar**: each bar's pitched notes (melody, chords, bass; weighted by duration) against
  the Krumhansl–Kessler major and minor profiles on the set's own tonic; the bar is in the asked
  mode when the profile of the mode's quality (major for valence > 0) correlates better. With the
  tonic fixed, a relative key cannot pass for the right one, as it can in free key finding.
- **The melody on top**: the share of melody notes above every chord note sounding at their
  onset, and the share doubled at the same pitch by a chord note sounding then.
- **Melodic shape**: the share of notes that repeat the previous pitch, distinct pitches per 4
  bars, notes per bar, steps (≤ 2 semitones) per leap, and range per 4 bars.

Used by `tools/evaluate.py` over a grid of moods, by the tests on single phrases, and on corpus
phrases for the reference ranges. A note is (start_beats, pitch, duration_beats), starts counted
from the start of the piece.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from livekomp.music.theory import mode_on_tonic

NoteRow = tuple[float, int, float]  # (start_beats, pitch, duration_beats)


def bars_of(notes: Sequence[NoteRow], beats_per_bar: int) -> dict[int, list[NoteRow]]:
    by_bar: dict[int, list[NoteRow]] = {}
    for note in notes:
        by_bar.setdefault(int(note[0] // beats_per_bar), []).append(note)
    return by_bar


def bar_modes(pitched: Sequence[NoteRow], tonic: int, beats_per_bar: int) -> list[str]:
    """The mode heard in each bar that has pitched notes, in bar order."""
    by_bar = bars_of(pitched, beats_per_bar)
    return [mode_on_tonic([(p, d) for _, p, d in by_bar[bar]], tonic) for bar in sorted(by_bar)]


def melody_on_top(melody: Sequence[NoteRow], chords: Sequence[NoteRow]) -> tuple[float, float]:
    """(share of melody notes above every chord note sounding at their onset, share doubled
    at the same pitch by a chord note sounding then). A chord note sounds at t when it starts at
    or before t and ends after it."""
    if not melody:
        return 0.0, 0.0
    above = doubled = 0
    for start, pitch, _ in melody:
        sounding = [p for s, p, d in chords if s <= start + 1e-9 and s + d > start + 1e-9]
        above += all(p < pitch for p in sounding)
        doubled += pitch in sounding
    return above / len(melody), doubled / len(melody)


def repeated_share(melody: Sequence[NoteRow]) -> float:
    """The share of notes (after the first) on the same pitch as the note before."""
    pitches = [p for _, p, _ in sorted(melody)]
    if len(pitches) < 2:
        return 0.0
    return sum(a == b for a, b in itertools.pairwise(pitches)) / (len(pitches) - 1)


def per_four_bars(melody: Sequence[NoteRow], beats_per_bar: int) -> list[list[NoteRow]]:
    """The melody cut into 4-bar phrases (those with notes)."""
    span = 4 * beats_per_bar
    phrases: dict[int, list[NoteRow]] = {}
    for note in sorted(melody):
        phrases.setdefault(int(note[0] // span), []).append(note)
    return [phrases[k] for k in sorted(phrases)]


def step_leap_ratio(melody: Sequence[NoteRow]) -> float:
    """Steps (1–2 semitones) per leap (3 or more); repeats count as neither."""
    pitches = [p for _, p, _ in sorted(melody)]
    moves = [abs(b - a) for a, b in itertools.pairwise(pitches) if a != b]
    steps = sum(m <= 2 for m in moves)
    leaps = len(moves) - steps
    return steps / leaps if leaps else float(steps)


def shape(melody: Sequence[NoteRow], beats_per_bar: int, bars: int) -> dict[str, float]:
    """The melody's shape figures over a passage of `bars` bars."""
    phrases = per_four_bars(melody, beats_per_bar)
    distinct = [len({p for _, p, _ in phrase}) for phrase in phrases]
    ranges = [max(p for _, p, _ in ph) - min(p for _, p, _ in ph) for ph in phrases]
    return {
        "repeated_share": repeated_share(melody),
        "distinct_per_4_bars": sum(distinct) / len(distinct) if distinct else 0.0,
        "notes_per_bar": len(melody) / bars if bars else 0.0,
        "step_leap_ratio": step_leap_ratio(melody),
        "range_per_4_bars": sum(ranges) / len(ranges) if ranges else 0.0,
    }
