"""The arrangement figures the evaluation reports: each on a passage whose answer is known."""

import numpy as np
import pytest

from tools import arrangement
from tools.evaluate import melody_features, two_sample_accuracy

C_MINOR_BAR = [(0.0, 60, 1.0), (1.0, 63, 1.0), (2.0, 67, 1.0), (3.0, 68, 1.0)]
C_MAJOR_BAR = [(4.0, 60, 1.0), (5.0, 64, 1.0), (6.0, 67, 1.0), (7.0, 69, 1.0)]


def test_bar_modes_are_heard_on_the_sets_tonic():
    assert arrangement.bar_modes(C_MINOR_BAR + C_MAJOR_BAR, tonic=0, beats_per_bar=4) == [
        "minor",
        "major",
    ]
    # E♭ major's notes are C minor's relative: on the tonic C they are heard as minor.
    e_flat = [(0.0, 63, 1.0), (1.0, 67, 1.0), (2.0, 70, 1.0), (3.0, 65, 1.0)]
    assert arrangement.bar_modes(e_flat, tonic=0, beats_per_bar=4) == ["minor"]


def test_melody_on_top_counts_notes_under_or_doubled_by_a_sounding_chord():
    chords = [(0.0, 55, 2.0), (0.0, 60, 2.0), (0.0, 64, 2.0), (2.0, 67, 2.0)]
    melody = [(0.0, 67, 1.0), (1.0, 64, 1.0), (2.0, 72, 1.0), (3.0, 65, 1.0)]
    above, doubled = arrangement.melody_on_top(melody, chords)
    # 67 over 55-60-64: above; 64 doubled (and not above); 72 over 67: above; 65 under 67.
    assert above == pytest.approx(2 / 4)
    assert doubled == pytest.approx(1 / 4)


def test_shape_of_a_drone_and_of_a_tune():
    drone = [(float(i), 62, 1.0) for i in range(16)]
    tune = [(float(i), 60 + [0, 2, 4, 5, 7, 5, 4, 2][i % 8], 1.0) for i in range(16)]
    assert arrangement.shape(drone, 4, 4)["repeated_share"] == 1.0
    assert arrangement.shape(drone, 4, 4)["distinct_per_4_bars"] == 1
    figures = arrangement.shape(tune, 4, 4)
    assert figures["repeated_share"] == 0.0
    assert figures["distinct_per_4_bars"] == 5
    assert figures["notes_per_bar"] == 4.0
    assert figures["range_per_4_bars"] == 7
    assert figures["step_leap_ratio"] == 15  # no leap at all: the steps are counted


def test_the_two_sample_classifier_tells_apart_what_differs_and_not_what_does_not():
    rng = np.random.default_rng(1)

    def walk(step_choices):
        pitch, melody = 60, []
        for i in range(32):
            pitch += int(rng.choice(step_choices))
            melody.append((float(i), pitch, 1.0))
        return melody

    steps_a = [walk([-2, -1, 1, 2]) for _ in range(200)]
    steps_b = [walk([-2, -1, 1, 2]) for _ in range(200)]
    leaps = [walk([-7, -5, 5, 7]) for _ in range(200)]
    assert melody_features(steps_a[0]).shape == melody_features(leaps[0]).shape
    assert two_sample_accuracy(steps_a, leaps) > 0.95
    assert abs(two_sample_accuracy(steps_a, steps_b) - 0.5) < 0.1
