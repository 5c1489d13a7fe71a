"""Proxy labels and training examples: what the models learn from is what the docs say it is."""

from pathlib import Path

import pytest
import torch

from livekomp.models import data, proxy, tokens
from livekomp.models.groove import STEPS
from livekomp.models.harmony import NO_CHORD, chord_class, chord_symbol

STATS = proxy.ProxyStats()
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
A_MINOR = [57, 59, 60, 62, 64, 65, 68, 69]


def record(pitches, notes_per_bar=4, bar_ticks=48, mode="major", tonic=0, chords=()):
    step = bar_ticks // notes_per_bar
    notes = [
        [i // notes_per_bar, (i % notes_per_bar) * step, p, step] for i, p in enumerate(pitches)
    ]
    bars = (len(pitches) + notes_per_bar - 1) // notes_per_bar
    return {
        "tonic": tonic,
        "mode": mode,
        "bar_ticks": [bar_ticks] * bars,
        "notes": notes,
        "chords": list(chords),
        "split": "train",
    }


def test_valence_follows_mode_and_key_profile():
    glad = data.bar_labels(record(C_MAJOR * 2), STATS)
    sad = data.bar_labels(record(A_MINOR * 2, mode="minor", tonic=9), STATS)
    assert all(v > 0.4 for v, _ in glad)
    assert all(v < -0.4 for v, _ in sad)


def test_arousal_follows_density_leaps_and_register():
    calm = record([60, 62, 64, 62] * 4, notes_per_bar=2)
    busy = record([72, 79, 74, 84] * 8, notes_per_bar=8)
    (_, a_calm), (_, a_busy) = data.bar_labels(calm, STATS)[0], data.bar_labels(busy, STATS)[0]
    assert -1 <= a_calm < 0 < a_busy <= 1


def test_every_bar_of_a_phrase_shares_its_label():
    labels = data.bar_labels(record(C_MAJOR * 3, notes_per_bar=2), STATS)  # 12 bars, 3 phrases
    assert len(labels) == 12
    assert labels[0] == labels[3] and labels[4] == labels[7]


def test_melody_windows_open_with_start_and_pad_with_minus_one():
    examples = data.melody_examples([record(C_MAJOR * 2)], STATS, context=32)
    assert examples.steps.shape == (1, 33, 3)
    first = examples.steps[0, 0].tolist()
    assert first == [tokens.POSITION_START, tokens.PITCH_START, tokens.DURATION_START]
    assert (examples.steps[0, 17:] == -1).all()
    assert examples.metre.tolist() == [tokens.metre_index(48)]


def test_harmony_examples_pair_half_bars_with_their_chords():
    chords = [[0, 0, 0, 0], [0, 1, 7, 0], [1, 0, 9, 1]]  # I, V, vi
    examples = data.harmony_examples([record(C_MAJOR, chords=chords)], STATS)
    assert examples.target.tolist() == [chord_class(0, 0), chord_class(7, 0), chord_class(9, 1)]
    assert examples.previous.tolist() == [NO_CHORD, chord_class(0, 0), chord_class(7, 0)]
    assert [chord_symbol(c) for c in examples.target.tolist()] == ["I", "V", "vi"]
    torch.testing.assert_close(examples.melody[:, :12].sum(1), torch.ones(3))


def test_groove_examples_mark_onsets_and_agogic_accents():
    examples = data.groove_examples([record(C_MAJOR, notes_per_bar=4)], STATS)
    assert examples.onsets.shape == (2, STEPS)
    assert examples.onsets[0].nonzero().flatten().tolist() == [0, 4, 8, 12]
    assert examples.accents[0, 0].item() == pytest.approx(2.0)  # a quarter is 4 sixteenths
    assert examples.bar_steps.tolist() == [16, 16]
    assert examples.previous[1].nonzero().flatten().tolist() == [0, 4, 8, 12]


def test_bars_off_the_sixteenth_grid_are_left_out_of_the_groove():
    triplets = record([60, 62, 64] * 2, notes_per_bar=3, bar_ticks=12)  # eighth-note triplets
    assert len(data.groove_examples([triplets], STATS)) == 0


def test_records_round_trip_through_gzip_json(tmp_path: Path):
    import gzip
    import json

    path = tmp_path / "works.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(record(C_MAJOR)) + "\n")
    assert next(iter(data.read_records(path)))["notes"][0] == [0, 0, 60, 12]
