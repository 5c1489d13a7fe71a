"""The neural composer's drums come from its groove model: real predictors, set or perturbed,
change the kit, and the shipped one makes it busier as arousal rises."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from livekomp.models import checkpoint
from livekomp.models.groove import STEPS, GrooveConfig, GroovePredictor
from livekomp.models.neural import NeuralComposer
from livekomp.models.runtime import TorchTrunk
from livekomp.music.drums import FILL_DRUMS, Drum
from livekomp.music.phrase import BarRequest, ComposedBar, Part
from tests.models.conftest import tiny_models

TOMS = {Drum.HIGH_TOM, Drum.MID_TOM, Drum.LOW_TOM}
METRIC = [2.2, 0.4, 1.2, 0.0, 1.6, 0.4, 1.1, 0.1, 2.0, 0.5, 1.0, 0.0, 1.6, 0.2, 1.0, 0.0]


def set_groove(onsets: set[int], accents: dict[int, float]) -> GroovePredictor:
    """A real groove predictor whose answer its last layer's bias fixes, whatever the mood and
    the bar before: a note on `onsets` (logit ±20, past the density control's reach), and the
    metric accents with `accents` written over them."""
    model = GroovePredictor(GrooveConfig(hidden=32)).eval()
    profile = METRIC * 2 + [0.0] * (STEPS - 2 * len(METRIC))
    for step, value in accents.items():
        profile[step] = value
    logits = [20.0 if s in onsets else -20.0 for s in range(STEPS)]
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.copy_(torch.tensor(logits + profile))
    return model


def composer_with(groove: GroovePredictor, seed: int = 3, **styles: GroovePredictor):
    melody, harmony, _ = tiny_models()
    composer = NeuralComposer(melody, harmony, groove, TorchTrunk(melody), seed)
    for name, style_groove in styles.items():
        composer.add_style(name, melody, TorchTrunk(melody), style_groove)
    return composer


def steps_of(bar: ComposedBar, *drums: Drum) -> list[int]:
    return sorted(round(n.start_beats * 4) for n in bar.parts[Part.DRUMS] if n.pitch in drums)


def request(index: int, arousal: float, style: str = "base", beats: int = 4) -> BarRequest:
    return BarRequest(index, beats, 2, 0.3, arousal, style=style)


def test_the_kit_follows_the_groove_models_accents_and_onsets():
    onsets = {0, 2, 6, 8, 10, 14}
    composer = composer_with(
        set_groove(onsets, {2: 2.6, 10: 2.4}),
        pushed=set_groove(onsets, {6: 2.5, 8: 2.4, 14: 0.5}),
    )
    base = composer.compose_bar(request(1, arousal=0.6))  # driving: three kicks
    assert steps_of(base, Drum.KICK) == [0, 2, 10]  # the strongest accents the groove plays
    assert steps_of(base, Drum.SNARE) == [4, 12]  # the backbeat, where it accents
    pushed = composer.compose_bar(request(1, arousal=0.6, style="pushed"))
    assert steps_of(pushed, Drum.SNARE) == [6, 12]  # the 'and' of two outweighs two
    assert steps_of(pushed, Drum.KICK) == [0, 2, 8]
    # Hats: a pulse on the beats, and every onset of the groove.
    moving = composer.compose_bar(request(1, arousal=0.0))
    assert steps_of(moving, Drum.CLOSED_HAT, Drum.OPEN_HAT) == sorted(onsets | {4, 12})
    assert moving.info["groove"] == sorted(onsets)


def test_a_different_groove_model_plays_different_drums():
    _, _, groove = tiny_models()
    perturbed = copy.deepcopy(groove)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for parameter in perturbed.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    composer = composer_with(groove, same=copy.deepcopy(groove), other=perturbed)
    differ = 0
    for index in range(8):
        bars = {
            style: composer.compose_bar(request(index, arousal=0.3, style=style))
            for style in ("base", "same", "other")
        }
        assert bars["same"].parts == bars["base"].parts  # the name of a style changes nothing
        assert bars["other"].parts[Part.MELODY] == bars["base"].parts[Part.MELODY]
        differ += bars["other"].parts[Part.DRUMS] != bars["base"].parts[Part.DRUMS]
        composer.accept(request(index, 0.3), bars["base"])
    assert differ >= 6, differ


@pytest.fixture(scope="module")
def shipped_groove() -> GroovePredictor:
    return checkpoint.load("groove", checkpoint.DEFAULT_DIR)


def play(groove: GroovePredictor, seed: int, arousal: float, bars: int = 8) -> list[ComposedBar]:
    composer = composer_with(groove, seed=seed)
    played = []
    for index in range(bars):
        bar = composer.compose_bar(request(index, arousal))
        composer.accept(request(index, arousal), bar)
        played.append(bar)
    return played


def test_the_shipped_groove_makes_the_kit_busier_as_arousal_rises(shipped_groove):
    arousals = (-0.8, -0.4, 0.0, 0.4, 0.8)
    per_bar = {
        a: np.mean([len(b.parts[Part.DRUMS]) for s in (1, 2) for b in play(shipped_groove, s, a)])
        for a in arousals
    }
    means = [per_bar[a] for a in arousals]
    assert all(a < b for a, b in itertools.pairwise(means)), per_bar
    assert means[0] <= 6, per_bar  # calm: a handful of soft hits a bar


def test_fills_end_the_phrases_and_crashes_open_them(shipped_groove):
    for bar in play(shipped_groove, seed=4, arousal=0.3, bars=12):
        if bar.index % 4 == 3:
            start = 16 - 4 * (2 if bar.index % 8 == 7 else 1)  # the fill's first step
            assert steps_of(bar, *TOMS), bar.index
            assert min(s for s in steps_of(bar, *FILL_DRUMS) if s >= start) == start
            assert all(s < start for s in steps_of(bar, Drum.CLOSED_HAT, Drum.OPEN_HAT))
        else:
            assert not steps_of(bar, *TOMS), bar.index
        assert (steps_of(bar, Drum.CRASH) == [0]) == (bar.index in (4, 8)), bar.index


def test_the_same_seed_plays_the_same_drums(shipped_groove):
    first = [b.parts[Part.DRUMS] for b in play(shipped_groove, seed=5, arousal=0.5)]
    again = [b.parts[Part.DRUMS] for b in play(shipped_groove, seed=5, arousal=0.5)]
    other = [b.parts[Part.DRUMS] for b in play(shipped_groove, seed=6, arousal=0.5)]
    assert first == again
    assert first != other
