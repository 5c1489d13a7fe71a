"""Harmony predictor: the melody of a half bar, the chord before it and the mood → its chord.

Trained on the Bach chorales: the soprano line against the chord that sounds at the start of each
half bar (music21's chordify, root and quality). A chord class is `root * 3 + quality`, the root in
semitones above the key's tonic and the quality major (0), minor (1) or diminished (2); the class
after the last one means "no chord before" (the first half bar of a piece).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

QUALITIES = ("major", "minor", "diminished")
QUALITY_INTERVALS = {0: (0, 4, 7), 1: (0, 3, 7), 2: (0, 3, 6)}
CHORD_CLASSES = 12 * len(QUALITIES)
NO_CHORD = CHORD_CLASSES
MELODY_FEATURES = 12 + 12 + 12 + 2  # duration-weighted pitch classes, first, last, which half
ROMAN = ("I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII")


def chord_class(root_above_tonic: int, quality: int) -> int:
    return (root_above_tonic % 12) * len(QUALITIES) + quality


def chord_root_quality(index: int) -> tuple[int, int]:
    return divmod(index, len(QUALITIES))


def chord_symbol(index: int) -> str:
    """Roman-numeral name of a chord class: I, ii, vii°, bVI …"""
    root, quality = chord_root_quality(index)
    numeral = ROMAN[root]
    if quality == 0:
        return numeral
    letters = numeral.lstrip("b#")
    return numeral[: len(numeral) - len(letters)] + letters.lower() + ("°" if quality == 2 else "")


def chord_pitch_classes(index: int, tonic: int) -> tuple[int, ...]:
    root, quality = chord_root_quality(index)
    return tuple((tonic + root + i) % 12 for i in QUALITY_INTERVALS[quality])


def melody_features(notes: Sequence[tuple[int, int]], tonic: int, half: int) -> list[float]:
    """Features of a half bar's melody: `notes` are (midi_pitch, duration) in time order."""
    weights = [0.0] * 12
    for pitch, duration in notes:
        weights[(pitch - tonic) % 12] += duration
    total = sum(weights)
    if total > 0:
        weights = [w / total for w in weights]
    first = [0.0] * 12
    last = [0.0] * 12
    if notes:
        first[(notes[0][0] - tonic) % 12] = 1.0
        last[(notes[-1][0] - tonic) % 12] = 1.0
    return weights + first + last + [1.0 - half, float(half)]


@dataclass(frozen=True)
class HarmonyConfig:
    hidden: int = 192
    chord_embedding: int = 32
    dropout: float = 0.2

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class HarmonyPredictor(nn.Module):
    def __init__(self, config: HarmonyConfig) -> None:
        super().__init__()
        self.config = config
        self.previous_chord = nn.Embedding(CHORD_CLASSES + 1, config.chord_embedding)
        self.net = nn.Sequential(
            nn.Linear(MELODY_FEATURES + config.chord_embedding + 2, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, CHORD_CLASSES),
        )

    def forward(
        self, melody: torch.Tensor, previous: torch.Tensor, mood: torch.Tensor
    ) -> torch.Tensor:
        """melody (B, MELODY_FEATURES), previous (B,) long, mood (B, 2) → logits (B, CLASSES)."""
        x = torch.cat([melody, self.previous_chord(previous), mood], dim=-1)
        return self.net(x)

    def loss(
        self, melody: torch.Tensor, previous: torch.Tensor, mood: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(self(melody, previous, mood), target)
