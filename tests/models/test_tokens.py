"""Note ↔ step encoding: every field lands in its vocabulary and means what it says."""

from hypothesis import given
from hypothesis import strategies as st

from livekomp.models import tokens


def test_a_tune_encodes_with_bar_advances_and_ticks():
    notes = [[0, 0, 62, 12], [0, 12, 64, 6], [1, 0, 66, 24], [3, 6, 67, 12]]
    steps = tokens.encode_notes(notes, tonic=2)
    assert steps[0] == tokens.START
    assert [tokens.split_position(s.position) for s in steps[1:]] == [
        (0, 0),
        (0, 12),
        (1, 0),
        (2, 6),
    ]
    assert [tokens.pitch_of(s.pitch, 2) for s in steps[1:]] == [62, 64, 66, 67]
    assert [tokens.DURATION_TICKS[s.duration] for s in steps[1:]] == [12, 6, 24, 12]


@given(st.integers(0, 127), st.integers(0, 11))
def test_every_pitch_lands_in_range_an_octave_move_away_at_most(pitch, tonic):
    index = tokens.pitch_index(pitch - tokens.TONIC_MIDI - tonic)
    assert 0 <= index < tokens.PITCH_START
    assert (tokens.pitch_of(index, tonic) - pitch) % 12 == 0


@given(st.integers(1, 400))
def test_durations_snap_to_the_nearest_length(ticks):
    chosen = tokens.DURATION_TICKS[tokens.duration_index(ticks)]
    assert all(abs(chosen - ticks) <= abs(other - ticks) for other in tokens.DURATION_TICKS)


def test_metres_map_to_the_nearest_known_bar():
    assert tokens.BAR_TICKS[tokens.metre_index(48)] == 48  # 4/4
    assert tokens.BAR_TICKS[tokens.metre_index(36)] == 36  # 3/4 and 6/8
    assert tokens.BAR_TICKS[tokens.metre_index(500)] == tokens.BAR_TICKS[-1]
