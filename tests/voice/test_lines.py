"""The lines file: answers to mood words and intents, and clear errors for a bad file."""

from __future__ import annotations

import pytest

from livekomp.mood import Mood
from livekomp.voice.lines import LinesError, load_responses


def test_the_shipped_lines_answer_words_and_intents_in_turn():
    responses = load_responses()
    first, second, third = (responses.respond("grief", Mood()) for _ in range(3))
    assert first != second and third == first  # used in turn
    assert responses.respond("calm", Mood()) in responses.lines["calm"]
    # An intent without lines of its own: the nearest word that has some answers.
    assert responses.respond("a bit brighter", Mood(0.5, 0.5)) is not None
    assert (
        responses.respond("elated", Mood())
        in responses.lines["joy"] + responses.lines["excited"] + responses.lines["triumphant"]
    )
    assert responses.respond("qwerty", Mood()) is None  # not a mood: no answer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[responses]\ngreif = ['x']\n", "responses.greif: not a mood word"),
        ("[responses]\njoy = []\n", "responses.joy: expected a list of lines"),
        ("[responses]\njoy = [3]\n", "responses.joy: 3 is not a line of text"),
        ("responses = 4\n", "responses: expected a"),
        ("[responses\n", "not valid TOML"),
    ],
)
def test_a_bad_lines_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "lines.toml"
    path.write_text(text)
    with pytest.raises(LinesError, match=message) as error:
        load_responses(path)
    assert str(path) in str(error.value)


def test_a_missing_lines_file_is_named(tmp_path):
    with pytest.raises(LinesError, match="no such lines file"):
        load_responses(tmp_path / "nope.toml")
