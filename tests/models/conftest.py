"""Tiny, untrained models and their checkpoints: what the model tests need, made in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from livekomp.models import checkpoint
from livekomp.models.groove import GrooveConfig, GroovePredictor
from livekomp.models.harmony import HarmonyConfig, HarmonyPredictor
from livekomp.models.melody import MelodyConfig, MelodyTransformer

TINY_MELODY = MelodyConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, context=48, dropout=0.0)


def tiny_models(seed: int = 0) -> tuple[MelodyTransformer, HarmonyPredictor, GroovePredictor]:
    torch.manual_seed(seed)
    melody = MelodyTransformer(TINY_MELODY).eval()
    # Untrained weights are near zero (std 0.02); widen them so the outputs depend on the inputs
    # enough for parity checks to mean something.
    with torch.no_grad():
        for p in melody.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    harmony = HarmonyPredictor(HarmonyConfig(hidden=32, chord_embedding=8)).eval()
    groove = GroovePredictor(GrooveConfig(hidden=32)).eval()
    return melody, harmony, groove


def save_tiny(directory: Path, seed: int = 0) -> Path:
    for kind, model in zip(("melody", "harmony", "groove"), tiny_models(seed), strict=True):
        checkpoint.save(model, kind, directory)
    return directory


@pytest.fixture
def tiny_checkpoints(tmp_path: Path) -> Path:
    return save_tiny(tmp_path / "checkpoints")
