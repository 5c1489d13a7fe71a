from livekomp.affect import MOOD_WORDS, Mood, interpret
from livekomp.intent import read


def test_negation_flips_valence():
    assert read("I'm sad").valence < 0
    assert read("I'm not sad at all, I feel good").valence > 0


def test_stuck_and_hopeless_is_sad_and_low():
    r = read("I feel stuck and hopeless")
    assert r.valence < 0 and r.arousal < 0 and "hopeless" in r.words


def test_mood_words_unchanged():
    for word in MOOD_WORDS:
        r = read(word)
        assert (r.valence, r.arousal) == interpret(word, Mood())
    assert (read("a bit calmer").valence, read("a bit calmer").arousal) == interpret(
        "a bit calmer", Mood()
    )


def test_bad_text_is_neutral_with_reason():
    for text in ["", "   ", "😀😀", "x" * 10_000, "\x00\x01\x02"]:
        r = read(text)
        assert (r.valence, r.arousal) == (0.0, 0.0) and r.why


def test_contrast_weights_the_clause_after_but():
    assert read("it started great but now I feel awful").valence < 0
    assert read("it started awful but now I feel great").valence > 0
