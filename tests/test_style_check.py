"""tools.style_check on melodies fixed here: what moves toward a folder passes, what stands still
or collapses onto a few pitches does not. (The check on a real trained style is in
tests/models/test_lora.py.)"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tools import style_check
from tools.style_corpus import TONIC, tune, write_corpus


def pentatonic(seed: int, tunes: int = 3) -> list[style_check.Melody]:
    """Tunes of the style corpus: walks on D major pentatonic."""
    rng = random.Random(seed)
    return [(TONIC, [pitch for _, pitch, _ in tune(rng)]) for _ in range(tunes)]


def chromatic(seed: int, notes: int = 400) -> list[style_check.Melody]:
    """A walk on every semitone, in small and large steps: far from the folder's scale."""
    rng = random.Random(seed)
    pitch, pitches = 62, []
    for _ in range(notes):
        pitch = max(50, min(80, pitch + rng.choice((-7, -5, -1, 1, 5, 7))))
        pitches.append(pitch)
    return [(TONIC, pitches)]


def collapsed() -> list[style_check.Melody]:
    """The collapse issue 13 reported: 157 notes, 103 of them D4 and 41 C♯4."""
    pitches = [62, 61] * 41 + [62] * 62 + [64, 66, 69, 71, 74, 67, 66, 69, 64, 71, 69, 66, 64]
    assert Counter(pitches)[62] == 103 and Counter(pitches)[61] == 41 and len(pitches) == 157
    return [(TONIC, pitches)]


def test_divergence_and_entropy_figures():
    same = Counter({0: 3, 7: 1})
    assert style_check.js_divergence_bits(same, same) == pytest.approx(0.0, abs=1e-12)
    assert style_check.js_divergence_bits(Counter({0: 1}), Counter({1: 5})) == pytest.approx(1.0)
    assert style_check.js_divergence_bits(Counter(), same) == 1.0
    assert style_check.entropy_bits(Counter({60: 2, 62: 2, 64: 2, 65: 2})) == pytest.approx(2.0)
    shape = style_check.shape([(2, [62, 64, 74, 50])])
    assert shape.pitch_classes == Counter({0: 3, 2: 1})
    assert shape.intervals == Counter({2: 1, 10: 1, -12: 1})  # -24 is pooled at an octave


def test_a_style_that_moves_toward_the_folder_passes():
    verdict = style_check.judge(pentatonic(1), pentatonic(2), chromatic(3))
    assert verdict.checks == {
        "pitch_classes_moved": True,
        "intervals_moved": True,
        "entropy_kept": True,
    }
    assert verdict.ok
    figures = verdict.as_dict()
    assert figures["ok"] is True and figures["notes"]["folder"] == 3 * 128


def test_a_style_that_plays_as_the_base_does_has_not_moved():
    base = chromatic(3)
    verdict = style_check.judge(pentatonic(1), base, base)
    assert not verdict.checks["pitch_classes_moved"] and not verdict.checks["intervals_moved"]
    assert not verdict.ok


def test_the_reported_collapse_fails_on_entropy():
    verdict = style_check.judge(pentatonic(1), collapsed(), chromatic(3))
    assert not verdict.checks["entropy_kept"]
    assert not verdict.ok


def test_the_tool_names_a_style_it_cannot_load_in_one_line(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "midi", songs=1)
    argv = ["nope", "--midi", str(corpus), "--adapters", str(tmp_path / "adapters")]
    assert style_check.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"style_check: error: style 'nope': no adapter folder {tmp_path / 'adapters' / 'nope'}"
    ]
    assert captured.out == ""
