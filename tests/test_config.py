import pytest

from livekomp.config import ConfigError, LiveConfig, load_live_config


def test_defaults_file_then_flags(tmp_path):
    config_file = tmp_path / "stage.toml"
    config_file.write_text(
        '[serve]\nbpm = 96\nkey = "F#"\nmappings = ["touchosc", "mine.toml"]\nclock_out = false\n'
    )
    config = load_live_config(config_file, {"bpm": 128.0, "seed": 4})
    assert config.bpm == 128.0  # the flag wins over the file
    assert config.key == "F#" and config.seed == 4 and config.clock_out is False
    assert config.mappings == ("touchosc", "mine.toml")
    assert config.osc_port == LiveConfig().osc_port  # untouched: the default


def test_ints_are_fine_where_floats_are_expected_but_not_the_reverse(tmp_path):
    assert load_live_config(None, {"bpm": 100}).bpm == 100.0
    with pytest.raises(ConfigError, match=r"osc_port: 9000\.5 is not a valid value"):
        load_live_config(None, {"osc_port": 9000.5})
    with pytest.raises(ConfigError, match="clock_out: 'yes' is not a valid value"):
        load_live_config(None, {"clock_out": "yes"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[serve]\nbpm = 5\n", "stage.toml: bpm: 5.0 is out of range"),
        ("[serve]\nlookahead_beats = 9\n", "lookahead_beats: 9.0 is out of range"),
        ("serve = 3\n", "stage.toml: serve: expected a [serve] table"),
        ("[serve\n", "stage.toml: not valid TOML"),
        ('[serve]\nmappings = "touchosc"\n', "serve.mappings: 'touchosc' is not a valid value"),
        ('[serve]\nclock = "ptp"\n', "stage.toml: clock: 'ptp'; choose internal, midi, link"),
        ("[serve]\nclock_timeout_beats = 0\n", "clock_timeout_beats: 0.0 is out of range"),
        ("[serve]\nnudge_ms = 900\n", "nudge_ms: 900.0 is out of range"),
        ('[serve]\nfeedback = "tablet"\n', "feedback: feedback target must be HOST:PORT"),
        ('[serve]\nstyles = ["reel", "my hymn"]\n', "stage.toml: styles: 'my hymn' is not a"),
        ('[serve]\nstyles = "reel"\n', "serve.styles: 'reel' is not a valid value"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, message):
    config_file = tmp_path / "stage.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_live_config(config_file, {})
    assert message in str(info.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_live_config(tmp_path / "nope.toml", {})


def test_clock_sync_settings_from_a_file(tmp_path):
    config_file = tmp_path / "stage.toml"
    config_file.write_text(
        '[serve]\nclock = "midi"\nmidi_clock_in = "Ableton"\nnudge_ms = -12\n'
        'feedback = "192.168.1.20:9001"\n'
    )
    config = load_live_config(config_file, {"clock_timeout_beats": 8.0})
    assert (config.clock, config.midi_clock_in, config.nudge_ms) == ("midi", "Ableton", -12.0)
    assert config.feedback == "192.168.1.20:9001" and config.clock_timeout_beats == 8.0


def test_voice_settings_from_the_file_and_flags(tmp_path):
    config_file = tmp_path / "stage.toml"
    config_file.write_text(
        '[serve]\nvoice = "espeak-ng"\nduck = 0.6\nalign = "beat"\naudio_out = "system"\n'
        "responses = false\n"
    )
    config = load_live_config(config_file, {"voice_level_db": -6.0})
    assert (config.voice, config.duck, config.align) == ("espeak-ng", 0.6, "beat")
    assert config.audio_out == "system" and config.responses is False
    assert config.voice_level_db == -6.0 and config.voice_fallback == "espeak-ng"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"voice": "alexa"}, "voice: 'alexa' is out of range"),
        ({"duck": 1.5}, "duck: 1.5 is out of range"),
        ({"align": "phrase"}, "align: 'phrase' is out of range"),
        ({"voice_level_db": 40.0}, "voice_level_db: 40.0 is out of range"),
    ],
)
def test_bad_voice_settings_are_named(table, message):
    with pytest.raises(ConfigError, match=message):
        load_live_config(None, table)


def test_styles_from_a_file_and_flags(tmp_path):
    config_file = tmp_path / "stage.toml"
    config_file.write_text('[serve]\nstyles = ["reel", "hymn"]\nadapters = "styles"\n')
    config = load_live_config(config_file, {})
    settings = config.composer_settings()
    assert settings.styles == ("reel", "hymn") and settings.adapters == "styles"
    assert config.initial_style == "reel"
    # Flags win; "base" plays first and loads nothing.
    config = load_live_config(config_file, {"styles": ["base", "hymn", "hymn"]})
    assert config.initial_style == "base" and config.composer_settings().styles == ("hymn",)
    assert LiveConfig().initial_style == "base" and LiveConfig().composer_settings().styles == ()
