"""The corpus builder on real music21 scores: a chorale's soprano, bars and chords."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

music21 = pytest.importorskip("music21")
build_dataset = pytest.importorskip("build_dataset")


def test_a_bach_chorale_becomes_a_record_with_chords():
    path = str(music21.corpus.getWork("bach/bwv66.6"))
    (record,) = build_dataset.parse_file(("bach", "chorale", path))
    assert record["source"] == "bach" and record["split"] in ("train", "valid", "test")
    assert (record["tonic"], record["mode"]) == (6, "minor")  # F-sharp minor
    assert set(record["bar_ticks"]) == {48}  # 4/4 on 12 ticks a quarter
    bars = [n[0] for n in record["notes"]]
    assert bars == sorted(bars) and len(record["notes"]) > 30
    assert all(0 <= onset < 48 and duration > 0 for _, onset, _, duration in record["notes"])
    assert len(record["chords"]) > 15
    assert all(quality in (0, 1, 2) for *_, quality in record["chords"])


def test_splits_are_by_work_and_stable():
    assert build_dataset.split_for("bach/bwv66.6#0") == build_dataset.split_for("bach/bwv66.6#0")
    shares = [build_dataset.split_for(f"essen/x#{i}") for i in range(2000)]
    assert 0.75 < shares.count("train") / 2000 < 0.85
