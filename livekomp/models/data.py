"""Training examples from work records (as `tools/build_dataset.py` writes them).

A record is a dict with `tonic`, `mode`, `bar_ticks` (one length per bar, in ticks), `notes`
([bar, onset_ticks, midi_pitch, duration_ticks] rows in time order) and, for the chorales,
`chords` ([bar, half, root_pc, quality]), and for a performer's labelled song `mood`
([valence, arousal], the whole work's). The same functions shape the performer's own MIDI for
fine-tuning, so base models and adapters see identical inputs.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from livekomp.models import proxy, tokens
from livekomp.models.groove import STEPS, TICKS_PER_STEP
from livekomp.models.harmony import MELODY_FEATURES, NO_CHORD, chord_class, melody_features

Record = dict


def read_records(path: Path) -> Iterator[Record]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def fit_proxy_stats(records: Iterable[Record]) -> proxy.ProxyStats:
    rows = [
        proxy.phrase_features(notes, quarters)
        for record in records
        for _, _, notes, quarters in proxy.phrase_notes(
            record["notes"], record["bar_ticks"], tokens.TICKS_PER_QUARTER
        )
        if len(notes) >= 2
    ]
    return proxy.fit_stats(rows)


def bar_labels(record: Record, stats: proxy.ProxyStats) -> list[tuple[float, float]]:
    """(valence, arousal) of each bar: the record's own `mood` when it has one (a performer's
    sidecar label), else the proxy labeller's."""
    if "mood" in record:
        valence, arousal = record["mood"]
        return [(float(valence), float(arousal))] * len(record["bar_ticks"])
    return proxy.label_work(
        record["notes"], record["bar_ticks"], record["mode"], stats, record.get("chords", ())
    )


@dataclass
class MelodyExamples:
    steps: torch.Tensor  # (N, W, 3) long, -1 past the end
    mood: torch.Tensor  # (N, W, 2)
    metre: torch.Tensor  # (N,) long

    def __len__(self) -> int:
        return self.steps.shape[0]


def melody_examples(
    records: Iterable[Record], stats: proxy.ProxyStats, context: int, stride: int | None = None
) -> MelodyExamples:
    """Windows of `context` notes, each opened by START (as generation opens its context)."""
    stride = stride or context * 3 // 4
    width = context + 1
    all_steps, all_mood, all_metre = [], [], []
    for record in records:
        labels = bar_labels(record, stats)
        notes = record["notes"]
        steps = tokens.encode_notes(notes, record["tonic"])[1:]
        moods = [labels[min(n[0], len(labels) - 1)] for n in notes]
        for start in range(0, max(len(steps) - context // 4, 1), stride):
            window = steps[start : start + context]
            window_mood = moods[start : start + context]
            if len(window) < 4:
                continue
            rows = [[s.position, s.pitch, s.duration] for s in (tokens.START, *window)]
            mood_rows = [window_mood[0], *window_mood]
            pad = width - len(rows)
            rows += [[-1, -1, -1]] * pad
            mood_rows += [window_mood[-1]] * pad
            bar = notes[start][0]
            all_steps.append(rows)
            all_mood.append(mood_rows)
            all_metre.append(tokens.metre_index(record["bar_ticks"][bar]))
    return MelodyExamples(
        torch.tensor(all_steps, dtype=torch.long),
        torch.tensor(all_mood, dtype=torch.float32),
        torch.tensor(all_metre, dtype=torch.long),
    )


@dataclass
class HarmonyExamples:
    melody: torch.Tensor  # (N, MELODY_FEATURES)
    previous: torch.Tensor  # (N,) long
    mood: torch.Tensor  # (N, 2)
    target: torch.Tensor  # (N,) long
    first_note: torch.Tensor  # (N,) long: pitch class above the tonic of the first melody note

    def __len__(self) -> int:
        return self.target.shape[0]


def half_bar_notes(record: Record, bar: int, half: int) -> list[tuple[int, int]]:
    length = record["bar_ticks"][bar]
    low, high = half * length // 2, (half + 1) * length // 2
    return [(n[2], n[3]) for n in record["notes"] if n[0] == bar and low <= n[1] < high]


def harmony_examples(records: Iterable[Record], stats: proxy.ProxyStats) -> HarmonyExamples:
    melody, previous, mood, target, first = [], [], [], [], []
    for record in records:
        chords = record.get("chords")
        if not chords:
            continue
        labels = bar_labels(record, stats)
        tonic = record["tonic"]
        prior = NO_CHORD
        last_slot = None
        for bar, half, root, quality in chords:
            notes = half_bar_notes(record, bar, half)
            slot = bar * 2 + half
            if last_slot is None or slot != last_slot + 1:
                prior = NO_CHORD
            current = chord_class(root - tonic, quality)
            if notes:
                melody.append(melody_features(notes, tonic, half))
                previous.append(prior)
                mood.append(labels[min(bar, len(labels) - 1)])
                target.append(current)
                first.append((notes[0][0] - tonic) % 12)
            prior, last_slot = current, slot
    return HarmonyExamples(
        torch.tensor(melody, dtype=torch.float32).reshape(-1, MELODY_FEATURES),
        torch.tensor(previous, dtype=torch.long),
        torch.tensor(mood, dtype=torch.float32),
        torch.tensor(target, dtype=torch.long),
        torch.tensor(first, dtype=torch.long),
    )


def accent_of(duration_ticks: int) -> float:
    """Agogic accent: log2 of the note's length in sixteenths, clamped to -1.6..4."""
    return max(-1.6, min(4.0, math.log2(max(duration_ticks, 1) / TICKS_PER_STEP)))


@dataclass
class GrooveExamples:
    mood: torch.Tensor  # (N, 2)
    metre: torch.Tensor  # (N,) long
    previous: torch.Tensor  # (N, STEPS)
    onsets: torch.Tensor  # (N, STEPS)
    accents: torch.Tensor  # (N, STEPS)
    bar_steps: torch.Tensor  # (N,) long

    def __len__(self) -> int:
        return self.bar_steps.shape[0]


def bar_onsets(
    notes: Sequence[Sequence[int]], bar_length: int
) -> tuple[list[float], list[float]] | None:
    """Onsets and accents of one bar's notes on the sixteenth grid; None if it is not on it."""
    if bar_length % TICKS_PER_STEP or bar_length // TICKS_PER_STEP > STEPS:
        return None
    onsets = [0.0] * STEPS
    accents = [0.0] * STEPS
    for note in notes:
        if note[1] % TICKS_PER_STEP:
            return None  # triplets and finer: not this grid
        step = note[1] // TICKS_PER_STEP
        onsets[step] = 1.0
        accents[step] = accent_of(note[3])
    return onsets, accents


def groove_examples(records: Iterable[Record], stats: proxy.ProxyStats) -> GrooveExamples:
    mood, metre, previous, onsets, accents, bar_steps = [], [], [], [], [], []
    for record in records:
        labels = bar_labels(record, stats)
        by_bar = proxy.by_bar(record["notes"])
        before = [0.0] * STEPS
        for bar, length in enumerate(record["bar_ticks"]):
            grid = bar_onsets(by_bar.get(bar, ()), length)
            if grid is None:
                before = [0.0] * STEPS
                continue
            if bar > 0 or by_bar.get(bar):  # skip a silent opening bar
                mood.append(labels[min(bar, len(labels) - 1)])
                metre.append(tokens.metre_index(length))
                previous.append(before)
                onsets.append(grid[0])
                accents.append(grid[1])
                bar_steps.append(length // TICKS_PER_STEP)
            before = grid[0]
    return GrooveExamples(
        torch.tensor(mood, dtype=torch.float32),
        torch.tensor(metre, dtype=torch.long),
        torch.tensor(previous, dtype=torch.float32),
        torch.tensor(onsets, dtype=torch.float32),
        torch.tensor(accents, dtype=torch.float32),
        torch.tensor(bar_steps, dtype=torch.long),
    )
