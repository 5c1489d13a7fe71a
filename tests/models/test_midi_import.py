"""MIDI import: a performer's files become records shaped exactly like the corpus works."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import mido
import pytest

from livekomp.models import data, proxy
from livekomp.models.midi_import import (
    MidiImportError,
    no_records_error,
    read_midi_file,
    read_midi_folder,
)

ROOT = Path(__file__).resolve().parents[2]
TPB = 480  # file ticks per quarter in most tests; the grid has 12
C_MAJOR_TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72]
A_MINOR_TUNE = [69, 72, 76, 74, 72, 71, 69, 68, 69, 64, 69, 71, 72, 71, 68, 69]

Timed = tuple[int, mido.Message | mido.MetaMessage]  # (absolute file tick, message)


def notes(
    rows: Iterable[tuple[float, int, float]],
    *,
    channel: int = 0,
    tpb: int = TPB,
    zero_velocity_off: bool = False,
) -> list[Timed]:
    """(onset_quarters, pitch, duration_quarters) rows as note-on/off messages."""
    out: list[Timed] = []
    for onset, pitch, duration in rows:
        start, end = round(onset * tpb), round((onset + duration) * tpb)
        out.append((start, mido.Message("note_on", channel=channel, note=pitch, velocity=90)))
        off = (
            mido.Message("note_on", channel=channel, note=pitch, velocity=0)
            if zero_velocity_off
            else mido.Message("note_off", channel=channel, note=pitch)
        )
        out.append((end, off))
    return out


def line(pitches: Sequence[int], quarters: float = 1.0, start: float = 0.0) -> list[tuple]:
    """A melody of equal notes, one after another."""
    return [(start + i * quarters, p, quarters) for i, p in enumerate(pitches)]


def signature(quarter: float, numerator: int, denominator: int, tpb: int = TPB) -> Timed:
    meta = mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)
    return round(quarter * tpb), meta


def track(*parts: Iterable[Timed], name: str = "") -> mido.MidiTrack:
    """Absolute-time messages as a track; at one tick, releases go before new notes."""
    timed = sorted(
        (m for part in parts for m in part),
        key=lambda tm: (tm[0], tm[1].type == "note_on" and tm[1].velocity > 0),
    )
    out = mido.MidiTrack()
    if name:
        out.append(mido.MetaMessage("track_name", name=name))
    now = 0
    for tick, message in timed:
        out.append(message.copy(time=tick - now))
        now = tick
    return out


def write(path: Path, *tracks: mido.MidiTrack, type: int = 1, tpb: int = TPB) -> Path:
    midi = mido.MidiFile(type=type, ticks_per_beat=tpb)
    midi.tracks.extend(tracks)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)
    return path


def tune(path: Path, pitches: Sequence[int] = C_MAJOR_TUNE, *extra: Iterable[Timed]) -> Path:
    """A plain one-track 4/4 file: `pitches` as quarter notes."""
    return write(path, track(notes(line(pitches)), *extra))


# --- notes and bars -------------------------------------------------------------------------


def test_a_monophonic_file_becomes_exact_rows(tmp_path):
    rows = [
        (0, 60, 1),
        (1, 62, 0.5),
        (1.5, 64, 0.5),
        (2, 65, 1),  # then a quarter rest
        (3.5, 67, 1.5),  # crosses the bar line: keeps its full length
        (5, 69, 1 / 3),  # a triplet
        (5 + 1 / 3, 71, 1 / 3),
        (5 + 2 / 3, 72, 1 / 3),
        (6, 60, 2),
    ]
    record = read_midi_file(write(tmp_path / "a.mid", track(notes(rows))))
    assert record["notes"] == [
        [0, 0, 60, 12],
        [0, 12, 62, 6],
        [0, 18, 64, 6],
        [0, 24, 65, 12],
        [0, 42, 67, 18],
        [1, 12, 69, 4],
        [1, 16, 71, 4],
        [1, 20, 72, 4],
        [1, 24, 60, 24],
    ]
    assert record["bar_ticks"] == [48, 48]
    assert (record["tonic"], record["mode"]) == (0, "major")
    assert record["id"] == record["work"] == "a.mid"
    assert record["source"] == "midi"
    assert "mood" not in record and "split" not in record


def test_velocity_zero_note_offs_read_like_note_offs(tmp_path):
    plain = read_midi_file(write(tmp_path / "a.mid", track(notes(line(C_MAJOR_TUNE, 0.75)))))
    zero = notes(line(C_MAJOR_TUNE, 0.75), zero_velocity_off=True)
    assert read_midi_file(write(tmp_path / "b.mid", track(zero)))["notes"] == plain["notes"]


def test_tempo_and_resolution_do_not_move_notes(tmp_path):
    plain = read_midi_file(tune(tmp_path / "a.mid"))
    tempi = [(0, mido.MetaMessage("set_tempo", tempo=400_000))]
    tempi.append((3 * TPB, mido.MetaMessage("set_tempo", tempo=900_000)))
    assert read_midi_file(tune(tmp_path / "b.mid", C_MAJOR_TUNE, tempi))["notes"] == plain["notes"]
    coarse = write(tmp_path / "c.mid", track(notes(line(C_MAJOR_TUNE), tpb=96)), tpb=96)
    assert read_midi_file(coarse)["notes"] == plain["notes"]


def test_played_timing_snaps_to_the_nearest_grid_tick(tmp_path):
    # 0.015 quarter early or late (8 ms at 110 bpm) is under half a grid tick: it snaps back.
    played = [
        (i + (0.015 if i % 2 else -0.015) * (i > 0), p, 0.97) for i, p in enumerate(C_MAJOR_TUNE)
    ]
    record = read_midi_file(write(tmp_path / "a.mid", track(notes(played))))
    assert [n[1] for n in record["notes"][:4]] == [0, 12, 24, 36]
    assert {n[3] for n in record["notes"]} == {12}


@pytest.mark.parametrize(
    ("numerator", "denominator", "bar"),
    [(3, 4, 36), (6, 8, 36), (7, 8, 42), (2, 2, 48), (12, 8, 72), (5, 4, 60)],
)
def test_the_time_signature_sets_the_bar_length(tmp_path, numerator, denominator, bar):
    eighths = line(C_MAJOR_TUNE * 2, quarters=0.5)
    record = read_midi_file(
        write(tmp_path / "a.mid", track([signature(0, numerator, denominator)], notes(eighths)))
    )
    assert set(record["bar_ticks"]) == {bar}
    assert sum(record["bar_ticks"]) >= 24 * 6  # every note inside the bars
    assert [(n[0], n[1]) for n in record["notes"]] == [
        divmod(i * 6, bar) for i in range(len(eighths))
    ]


def test_time_signature_changes_mark_the_bars(tmp_path):
    changes = [signature(0, 4, 4), signature(8, 3, 4), signature(14, 7, 8)]
    # one note at the start of each bar: 4/4 4/4 3/4 3/4 7/8 7/8
    starts = [0, 4, 8, 11, 14, 17.5]
    rows = [(q, 60 + 2 * i, 1) for i, q in enumerate(starts)] + [(18.5, 72, 1), (19.5, 71, 1)]
    record = read_midi_file(write(tmp_path / "a.mid", track(changes, notes(rows))))
    assert record["bar_ticks"] == [48, 48, 36, 36, 42, 42]
    assert [(n[0], n[1]) for n in record["notes"]] == [
        (0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (5, 12), (5, 24)
    ]  # fmt: skip


def test_a_time_signature_inside_a_bar_starts_a_new_bar_there(tmp_path):
    changes = [signature(0, 4, 4), signature(6, 3, 4)]  # half way through bar 2
    rows = line(C_MAJOR_TUNE)
    record = read_midi_file(write(tmp_path / "a.mid", track(changes, notes(rows))))
    assert record["bar_ticks"] == [48, 24, 36, 36]
    assert record["notes"][6] == [2, 0, 64, 12]


def test_a_time_signature_in_another_track_counts(tmp_path):
    conductor = track([signature(0, 3, 4)], name="Conductor")
    path = write(tmp_path / "a.mid", conductor, track(notes(line(C_MAJOR_TUNE)), name="Tune"))
    assert set(read_midi_file(path)["bar_ticks"]) == {36}


@pytest.mark.parametrize(
    ("numerator", "denominator", "reason"),
    [(9, 4, "9 quarters long, the models know at most 8"), (3, 32, "not a whole number")],
)
def test_a_metre_the_models_cannot_hold_is_refused(tmp_path, numerator, denominator, reason):
    path = write(
        tmp_path / "odd.mid",
        track([signature(0, numerator, denominator)], notes(line(C_MAJOR_TUNE))),
    )
    with pytest.raises(
        MidiImportError, match=rf"odd\.mid: metre {numerator}/{denominator} is not supported"
    ) as error:
        read_midi_file(path)
    assert reason in str(error.value)


def test_leading_empty_bars_are_trimmed(tmp_path):
    changes = [signature(0, 3, 4), signature(6, 4, 4)]  # two empty 3/4 bars, then 4/4
    rows = line(C_MAJOR_TUNE, start=6 + 4 + 1)  # first note on beat 2 of the second 4/4 bar
    record = read_midi_file(write(tmp_path / "a.mid", track(changes, notes(rows))))
    assert record["notes"][0] == [0, 12, 60, 12]
    assert record["notes"][3] == [1, 0, 65, 12]
    assert record["bar_ticks"] == [48, 48, 48, 48]


def test_a_note_never_released_ends_with_its_track(tmp_path):
    tail = len(C_MAJOR_TUNE) * TPB  # where the tune ends: bar 3
    held = [(tail, mido.Message("note_on", note=72, velocity=80))]
    end = [(tail + 2 * TPB, mido.MetaMessage("end_of_track"))]
    path = write(tmp_path / "a.mid", track(notes(line(C_MAJOR_TUNE)), held, end))
    assert read_midi_file(path)["notes"][-1] == [3, 0, 72, 24]


def test_a_repeated_key_ends_the_sounding_note(tmp_path):
    on = mido.Message("note_on", note=60, velocity=80)
    off = mido.Message("note_off", note=60)
    overlapped = [(0, on), (TPB, on), (2 * TPB, off), (3 * TPB, off)]
    rest = notes(line(C_MAJOR_TUNE, start=4))
    record = read_midi_file(write(tmp_path / "a.mid", track(overlapped, rest)))
    assert record["notes"][:3] == [[0, 0, 60, 12], [0, 12, 60, 12], [1, 0, 60, 12]]


# --- which notes are the melody -------------------------------------------------------------


def test_chords_keep_their_top_note_and_overlaps_are_cut(tmp_path):
    rows = [
        (0, 48, 2), (0, 64, 2), (0, 67, 2), (0, 60, 2),  # a chord: G4 on top
        (1, 72, 1),  # starts while the chord sounds: the chord's top note is cut
        (2, 55, 1),  # lower, but the only onset here: it is the melody for now
        (3, 69, 1), (3.02, 71, 1),  # played together: one grid onset, the higher kept
    ]  # fmt: skip
    rows += line(C_MAJOR_TUNE[:6], start=4)
    record = read_midi_file(write(tmp_path / "a.mid", track(notes(rows))))
    assert record["notes"][:4] == [
        [0, 0, 67, 12],
        [0, 12, 72, 12],
        [0, 24, 55, 12],
        [0, 36, 71, 12],
    ]


def test_the_busiest_track_is_the_melody(tmp_path):
    bass = track(notes(line([36, 43] * 8, quarters=0.5), channel=1), name="Bass")
    lead = track(notes(line(C_MAJOR_TUNE), channel=0), name="Lead")
    path = write(tmp_path / "a.mid", track([signature(0, 4, 4)], name="Conductor"), lead, bass)
    assert [n[2] for n in read_midi_file(path)["notes"]] == [36, 43] * 8


@pytest.mark.parametrize("choice", ["Lead", "lead", " LEAD ", 1, "1"])
def test_the_performer_can_name_the_melody_track(tmp_path, choice):
    bass = track(notes(line([36, 43] * 8, quarters=0.5), channel=1), name="Bass")
    lead = track(notes(line(C_MAJOR_TUNE), channel=0), name="Lead")
    path = write(tmp_path / "a.mid", bass, lead)
    assert [n[2] for n in read_midi_file(path, track=choice)["notes"]] == C_MAJOR_TUNE


def test_a_track_that_is_not_there_is_said_with_the_tracks_that_are(tmp_path):
    path = write(tmp_path / "a.mid", track(notes(line(C_MAJOR_TUNE)), name="Lead"))
    with pytest.raises(
        MidiImportError, match=r"a\.mid: no track named or numbered 'Flute'; tracks: 0 'Lead'"
    ):
        read_midi_file(path, track="Flute")
    with pytest.raises(MidiImportError, match="no track named or numbered 3"):
        read_midi_file(path, track=3)


def test_drums_are_never_the_melody(tmp_path):
    drums = notes(line([42, 36, 42, 38] * 8, quarters=0.5), channel=9)
    path = write(tmp_path / "a.mid", track(drums, notes(line(C_MAJOR_TUNE))))
    assert [n[2] for n in read_midi_file(path)["notes"]] == C_MAJOR_TUNE
    drum_track = write(
        tmp_path / "b.mid", track(notes(line(C_MAJOR_TUNE))), track(drums, name="Kit")
    )
    with pytest.raises(MidiImportError, match="track 1 'Kit' has no pitched notes"):
        read_midi_file(drum_track, track="kit")


TOPS = [72, 74, 76, 77, 79, 77, 76, 74]


def test_a_type_0_file_keeps_its_channels_apart(tmp_path):
    melody = notes(line(TOPS), channel=0)
    bass = notes(line([36, 43] * 8, quarters=0.5), channel=1)
    path = write(tmp_path / "a.mid", track(melody, bass), type=0)
    assert [n[2] for n in read_midi_file(path)["notes"]] == [36, 43] * 8  # the busier channel
    both = read_midi_file(path, track=0)  # the whole track: its highest voice
    assert [n[2] for n in both["notes"]] == [p for top in TOPS for p in (top, 43)]


# --- key and mood ---------------------------------------------------------------------------


def test_the_key_comes_from_every_pitched_note(tmp_path):
    record = read_midi_file(tune(tmp_path / "a.mid", A_MINOR_TUNE))
    assert (record["tonic"], record["mode"]) == (9, "minor")
    drums = notes(line([37, 39, 42, 44, 46, 49, 51] * 9), channel=9)  # not pitches: ignored
    assert (read_midi_file(tune(tmp_path / "b.mid", A_MINOR_TUNE, drums))["tonic"]) == 9


def test_a_sidecar_gives_the_mood(tmp_path):
    path = tune(tmp_path / "song.mid")
    (tmp_path / "song.toml").write_text("valence = -0.5\narousal = 1\n")
    assert read_midi_file(path)["mood"] == [-0.5, 1.0]


@pytest.mark.parametrize(
    ("sidecar", "said"),
    [
        ("valence = \n", "sidecar song.toml: not valid TOML"),
        ("valence = 0.5\n", "sidecar song.toml: arousal: missing"),
        ('valence = "sad"\narousal = 0\n', "sidecar song.toml: valence: must be a number"),
        ("valence = true\narousal = 0\n", "sidecar song.toml: valence: must be a number"),
        ("valence = 0\narousal = 1.5\n", "sidecar song.toml: arousal: must be in -1..1, got 1.5"),
        ("valence = nan\narousal = 0\n", "sidecar song.toml: valence: must be in -1..1"),
        ("valence = 0\narousal = 0\nenergy = 1\n", "sidecar song.toml: energy: unknown key"),
    ],
)
def test_a_bad_sidecar_skips_its_file_naming_the_key(tmp_path, sidecar, said):
    tune(tmp_path / "song.mid")
    (tmp_path / "song.toml").write_text(sidecar)
    records, skipped = read_midi_folder(tmp_path)
    assert records == []
    assert len(skipped) == 1
    assert skipped[0].startswith(f"{tmp_path / 'song.mid'}: {said}")


# --- folders and bad files ------------------------------------------------------------------


def test_bad_files_are_skipped_one_line_each_and_good_ones_come_back(tmp_path):
    tune(tmp_path / "b_good.mid")
    tune(tmp_path / "set" / "a_good.MIDI", A_MINOR_TUNE)
    (tmp_path / "corrupt.mid").write_bytes(random.Random(1).randbytes(300))
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "truncated.mid").write_bytes(tune(tmp_path / "x" / "t.mid").read_bytes()[:40])
    write(tmp_path / "drums.mid", track(notes(line([36, 38] * 8), channel=9)))
    write(tmp_path / "short.mid", track(notes(line([60, 62, 64]))))
    write(tmp_path / "silent.mid", track([signature(0, 4, 4)]))
    (tmp_path / "notes.txt").write_text("not MIDI, not looked at")

    records, skipped = read_midi_folder(tmp_path)

    assert [r["id"] for r in records] == ["b_good.mid", "set/a_good.MIDI", "x/t.mid"]
    assert records[1]["tonic"] == 9
    assert skipped == [
        f"{tmp_path / 'corrupt.mid'}: not a readable MIDI file: MThd not found. Probably not a "
        "MIDI file",
        f"{tmp_path / 'drums.mid'}: only drum notes (channel 10); no melody to learn from",
        f"{tmp_path / 'empty.mid'}: empty file (0 bytes)",
        f"{tmp_path / 'short.mid'}: only 3 melody notes; a piece needs at least 8",
        f"{tmp_path / 'silent.mid'}: no notes",
        f"{tmp_path / 'truncated.mid'}: not a MIDI file, or a truncated one: it ends early",
    ]


def test_a_damaged_file_is_never_more_than_a_skip_line(tmp_path):
    good = tune(tmp_path / "good.mid").read_bytes()
    rng = random.Random(5)
    for i in range(300):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path = tmp_path / f"damaged{i}.mid"
        path.write_bytes(bytes(damaged[: rng.randint(1, len(damaged))] if i % 3 == 0 else damaged))
        try:
            read_midi_file(path)
        except MidiImportError as error:
            assert str(error).startswith(f"{path}: ")


def test_a_file_lasting_for_days_is_refused(tmp_path):
    rows = [*line(C_MAJOR_TUNE[:7]), (4 * 20_000, 60, 1)]  # the last note 20000 bars later
    with pytest.raises(MidiImportError, match="longer than 10000 bars"):
        read_midi_file(write(tmp_path / "a.mid", track(notes(rows))))


def test_a_folder_that_is_not_there_is_an_error(tmp_path):
    with pytest.raises(MidiImportError, match="no such folder"):
        read_midi_folder(tmp_path / "missing")
    with pytest.raises(MidiImportError, match="not a folder"):
        read_midi_folder(tune(tmp_path / "a.mid"))


def test_an_unusable_folder_has_an_error_that_says_why(tmp_path):
    assert "no MIDI files (.mid, .midi)" in str(no_records_error(tmp_path, []))
    (tmp_path / "empty.mid").write_bytes(b"")
    records, skipped = read_midi_folder(tmp_path)
    message = str(no_records_error(tmp_path, skipped))
    assert records == [] and "none of its 1 MIDI files" in message and "empty.mid: empty" in message


# --- the records train like corpus works ----------------------------------------------------


def test_records_shape_into_training_examples(tmp_path):
    tune(tmp_path / "a.mid", C_MAJOR_TUNE * 4)
    eighths = line(A_MINOR_TUNE * 2, quarters=0.5)
    write(tmp_path / "b.mid", track([signature(0, 6, 8)], notes(eighths)))
    records, skipped = read_midi_folder(tmp_path)
    assert skipped == [] and len(records) == 2
    with (ROOT / "checkpoints" / "melody.json").open() as f:
        stats = proxy.ProxyStats(**json.load(f)["proxy_stats"])

    melody = data.melody_examples(records, stats, context=64)
    groove = data.groove_examples(records, stats)

    assert len(melody) == 2 and melody.steps.shape == (2, 65, 3)
    assert (melody.steps[:, :33] >= 0).all()  # both tunes fill a window this far
    assert len(groove) == sum(len(r["bar_ticks"]) for r in records)
    assert groove.onsets.sum() > 0
