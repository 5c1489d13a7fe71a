import itertools
import math

import pytest

from livekomp.affect import MOOD_WORDS, Mood, interpret
from livekomp.inputs.events import ControlEvent, Param
from livekomp.mood import MoodState, Smoothed


def test_slew_approaches_target_exponentially():
    value = Smoothed(0.0, slew_s=0.5)
    value.set(1.0, 0.0, None)
    assert value.value_at(0.0) == 0.0
    assert value.value_at(0.5) == pytest.approx(1 - math.exp(-1))
    assert value.value_at(5.0) == pytest.approx(1.0, abs=1e-4)


def test_glide_is_linear_and_ends_on_target():
    value = Smoothed(-1.0, slew_s=0.5)
    value.set(1.0, 10.0, 4.0)
    assert value.value_at(11.0) == pytest.approx(-0.5)
    assert value.value_at(12.0) == pytest.approx(0.0)
    assert value.value_at(14.0) == pytest.approx(1.0)
    assert value.value_at(20.0) == pytest.approx(1.0)


def test_zero_glide_jumps():
    value = Smoothed(0.0, slew_s=2.0)
    value.set(0.7, 1.0, 0.0)
    assert value.value_at(1.0) == 0.7


def test_jumpy_fader_gives_smooth_mood():
    state = MoodState(slew_s=0.3)
    readings = []
    for step in range(100):
        now = step * 0.01
        target = 1.0 if step % 2 else -1.0  # a fader rattling between the extremes
        state.apply(ControlEvent(Param.VALENCE, target), now)
        readings.append(state.at(now).valence)
    assert max(abs(b - a) for a, b in itertools.pairwise(readings)) < 0.1


def test_out_of_range_values_are_clamped_and_non_numbers_rejected():
    state = MoodState(slew_s=0.0)
    state.apply(ControlEvent(Param.AROUSAL, 3.0, glide_s=0.0), 0.0)
    assert state.at(0.0).arousal == 1.0
    with pytest.raises(TypeError):
        state.apply(ControlEvent(Param.AROUSAL, "loud"), 0.0)


def test_mood_words_sit_where_the_circumplex_puts_them():
    assert MOOD_WORDS["grief"][0] < -0.5 and MOOD_WORDS["grief"][1] < 0
    assert MOOD_WORDS["joy"][0] > 0.5 and MOOD_WORDS["joy"][1] > 0
    assert MOOD_WORDS["anger"][0] < 0 < MOOD_WORDS["anger"][1]
    assert MOOD_WORDS["calm"][1] < -0.5 < 0 < MOOD_WORDS["calm"][0]
    for valence, arousal in MOOD_WORDS.values():
        assert -1 <= valence <= 1 and -1 <= arousal <= 1


def test_intent_texts():
    here = Mood(valence=0.2, arousal=0.4)
    assert interpret("joy", here) == MOOD_WORDS["joy"]
    assert interpret("Calm joy!", here) == pytest.approx(
        tuple((a + b) / 2 for a, b in zip(MOOD_WORDS["calm"], MOOD_WORDS["joy"], strict=True))
    )
    assert interpret("a bit calmer", here) == pytest.approx((0.2, 0.25))
    assert interpret("much darker", here) == pytest.approx((0.2 - 0.51, 0.4))
    assert interpret("xylophone", here) is None
    assert interpret("", here) is None


def test_mood_event_moves_valence_and_arousal_and_unknown_word_is_refused():
    state = MoodState(slew_s=0.0)
    assert state.apply(ControlEvent(Param.MOOD, "grief", glide_s=0.0), 0.0)
    assert (state.at(0.0).valence, state.at(0.0).arousal) == MOOD_WORDS["grief"]
    assert not state.apply(ControlEvent(Param.MOOD, "qwerty"), 1.0)
    assert not state.apply(ControlEvent(Param.SAY, "hello"), 1.0)
    assert state.target().valence == MOOD_WORDS["grief"][0]
