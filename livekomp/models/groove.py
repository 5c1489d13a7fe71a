"""Groove predictor: mood, metre and the bar before → where notes start in this bar, and how hard.

A bar is a grid of sixteenth notes (up to `STEPS`). For each step the model gives the probability
that a note starts there, and an accent: the expected length of a note starting there, as
log2(sixteenths). Both are learned from the corpus's melodies: onsets are what the tunes do, and
the accent is agogic — music psychology finds a longer note heard as stressed (Povel & Okkerman
1981), and the corpus, almost free of dynamics, holds no other evidence of stress. Swing and
velocities have no data here and stay rule-based; there are no drum parts either, so
music/drums.py reads a kit from these onsets and accents, with tables for what they cannot say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from livekomp.models import tokens

STEPS_PER_QUARTER = 4
TICKS_PER_STEP = tokens.TICKS_PER_QUARTER // STEPS_PER_QUARTER
STEPS = tokens.MAX_BAR_QUARTERS * STEPS_PER_QUARTER


@dataclass(frozen=True)
class GrooveConfig:
    hidden: int = 192
    dropout: float = 0.1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def step_mask(bar_steps: torch.Tensor) -> torch.Tensor:
    """(B,) bar lengths in steps → (B, STEPS) bool, True inside the bar."""
    return torch.arange(STEPS, device=bar_steps.device)[None, :] < bar_steps[:, None]


class GroovePredictor(nn.Module):
    def __init__(self, config: GrooveConfig) -> None:
        super().__init__()
        self.config = config
        self.metre = nn.Embedding(tokens.METRE_VOCAB, 16)
        self.net = nn.Sequential(
            nn.Linear(2 + 16 + STEPS, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, 2 * STEPS),
        )

    def forward(
        self, mood: torch.Tensor, metre: torch.Tensor, previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mood (B, 2), metre (B,) long, previous onsets (B, STEPS) → onset logits, accents."""
        out = self.net(torch.cat([mood, self.metre(metre), previous], dim=-1))  # (B, 2*STEPS)
        return out[:, :STEPS], out[:, STEPS:]

    def loss(
        self,
        mood: torch.Tensor,
        metre: torch.Tensor,
        previous: torch.Tensor,
        onsets: torch.Tensor,
        accents: torch.Tensor,
        inside: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary cross-entropy of onsets inside the bar, and squared error of accents at onsets."""
        onset_logits, accent = self(mood, metre, previous)
        bce = F.binary_cross_entropy_with_logits(onset_logits[inside], onsets[inside])
        at_onsets = inside & (onsets > 0.5)
        mse = F.mse_loss(accent[at_onsets], accents[at_onsets])
        return bce, mse
