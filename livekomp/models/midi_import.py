"""The performer's own MIDI files as work records, for fine-tuning style adapters.

A record is what `tools/build_dataset.py` writes for a corpus work (see `livekomp.models.data`),
so the base models and an adapter learn from identically shaped examples:

- the melody is the highest voice ("skyline") of one (track, channel) group: the busiest pitched
  group, or the track the performer names. Drums (channel 10) are never the melody;
- times are file ticks turned into quarters through the file's `ticks_per_beat` (tempo changes do
  not move notes in the score) and quantized to `tokens.TICKS_PER_QUARTER` ticks a quarter;
- bars follow the file's time signatures (4/4 where there is none); whole empty bars before the
  first melody note are dropped, so a record opens on its first note's bar;
- the key is found from every pitched note of the file, weighted by duration, as for a polyphonic
  corpus work;
- an optional sidecar `NAME.toml` beside `NAME.mid` gives the performer's own mood for the piece:
  `valence` and `arousal`, numbers in -1..1, stored as `record["mood"]`.

A file that cannot become a record raises `MidiImportError` naming the file and the reason; reading
a folder turns each into one skip line, so no file is dropped without a word.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import mido

from livekomp.models.tokens import MAX_BAR_QUARTERS, TICKS_PER_QUARTER
from livekomp.music.theory import detect_key
from livekomp.tomlfile import read_toml

MIDI_SUFFIXES = (".mid", ".midi")
DRUM_CHANNEL = 9  # channel 10, as musicians count
MIN_MELODY_NOTES = 8  # the fewest notes a corpus part needs to become a record
MAX_BARS = 10_000  # hours of music; more is a damaged file (huge delta times), not a piece
MOOD_KEYS = ("valence", "arousal")
SOURCE = "midi"

TrackChoice = str | int | None
Group = tuple[int, int]  # (track index, channel)


class MidiImportError(ValueError):
    """A MIDI file, folder or sidecar that cannot be used; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class _Note:
    """A note in file ticks, as the file holds it."""

    onset: int
    end: int
    pitch: int


@dataclass(frozen=True, slots=True)
class _GridNote:
    """A note on the record's grid: absolute onset and duration, in grid ticks."""

    onset: int
    pitch: int
    duration: int


@dataclass
class _Song:
    """What a file holds that a record needs, still in file ticks."""

    ticks_per_beat: int
    track_names: list[str]
    groups: dict[Group, list[_Note]] = field(default_factory=dict)
    time_signatures: list[tuple[int, int, int]] = field(default_factory=list)  # tick, num, den

    def pitched(self) -> dict[Group, list[_Note]]:
        return {group: notes for group, notes in self.groups.items() if group[1] != DRUM_CHANNEL}


def read_midi_folder(folder: Path, *, track: TrackChoice = None) -> tuple[list[dict], list[str]]:
    """Records of every MIDI file in `folder` and below, and one "path: reason" line per skip.

    Files are read in sorted order so the same folder always gives the same records. A record's
    id is its path inside `folder`, which keeps two `take1.mid` in different folders apart.
    """
    if not folder.exists():
        raise MidiImportError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise MidiImportError(f"{folder}: not a folder")
    records: list[dict] = []
    skipped: list[str] = []
    for path in _midi_files(folder):
        try:
            records.append(_read_record(path, path.relative_to(folder).as_posix(), track))
        except MidiImportError as error:
            skipped.append(str(error))
    return records, skipped


def read_midi_file(path: Path, *, track: TrackChoice = None) -> dict:
    """One MIDI file as a work record (its id is the file name)."""
    return _read_record(path, path.name, track)


def no_records_error(folder: Path, skipped: Sequence[str]) -> MidiImportError:
    """The error for a folder that gave no records, with every skip line so it can be fixed."""
    if not skipped:
        suffixes = ", ".join(MIDI_SUFFIXES)
        return MidiImportError(f"{folder}: no MIDI files ({suffixes}) in it or below it")
    lines = "\n".join(f"  {line}" for line in skipped)
    return MidiImportError(f"{folder}: none of its {len(skipped)} MIDI files can be used:\n{lines}")


def _midi_files(folder: Path) -> list[Path]:
    found = (p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_record(path: Path, work_id: str, track: TrackChoice) -> dict:
    """One file as a record. The helpers say only what is wrong; the file's name is added here."""
    try:
        song = _read_song(_open(path))
        melody = _skyline(_on_grid(_chosen_notes(song, track), song.ticks_per_beat))
        if len(melody) < MIN_MELODY_NOTES:
            raise MidiImportError(
                f"only {len(melody)} melody notes; a piece needs at least {MIN_MELODY_NOTES}"
            )
        bar_ticks, notes = _bar_rows(melody, _time_signatures(song))
        tonic, mode = _key(song)
        mood = _read_mood(path)
    except MidiImportError as error:
        raise MidiImportError(f"{path}: {error}") from None
    record = {
        "id": work_id,
        "work": work_id,
        "source": SOURCE,
        "tonic": tonic,
        "mode": mode,
        "bar_ticks": bar_ticks,
        "notes": notes,
    }
    if mood is not None:
        record["mood"] = mood
    return record


def _open(path: Path) -> mido.MidiFile:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise MidiImportError(f"cannot read: {error}") from None
    if size == 0:
        raise MidiImportError("empty file (0 bytes)")
    try:
        midi = mido.MidiFile(path)
    except EOFError:
        raise MidiImportError("not a MIDI file, or a truncated one: it ends early") from None
    # mido reports a malformed file with whichever of these its check happened to raise.
    except (OSError, ValueError, LookupError, mido.KeySignatureError) as error:
        raise MidiImportError(f"not a readable MIDI file: {error}") from None
    if midi.type == 2:
        raise MidiImportError("type 2 MIDI files (independent patterns) are not supported")
    if midi.ticks_per_beat <= 0:
        raise MidiImportError("SMPTE time division is not supported; save with ticks per beat")
    return midi


def _read_song(midi: mido.MidiFile) -> _Song:
    """Every note of every (track, channel) with its onset and release, and the time signatures.

    A note-on with velocity 0 is a note-off. A second note-on of a sounding pitch ends the
    sounding note there (a repeated key), so no group holds two notes of one pitch at once. A
    note never released ends with its track.
    """
    song = _Song(midi.ticks_per_beat, [track.name for track in midi.tracks])
    for index, track in enumerate(midi.tracks):
        sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) → onset tick
        now = 0
        for message in track:
            now += message.time
            if message.type == "time_signature":
                song.time_signatures.append((now, message.numerator, message.denominator))
            elif message.type in ("note_on", "note_off"):
                key = (message.channel, message.note)
                onset = sounding.pop(key, None)
                if onset is not None:
                    song.groups.setdefault((index, key[0]), []).append(_Note(onset, now, key[1]))
                if message.type == "note_on" and message.velocity > 0:
                    sounding[key] = now
        for (channel, pitch), onset in sounding.items():
            song.groups.setdefault((index, channel), []).append(_Note(onset, now, pitch))
    return song


def _chosen_notes(song: _Song, track: TrackChoice) -> list[_Note]:
    """The notes the melody is taken from: the named track's pitched notes, else the busiest group.

    Ties between equally busy groups go to the first track and channel, so the choice is stable.
    """
    pitched = song.pitched()
    if not song.groups:
        raise MidiImportError("no notes")
    if not pitched:
        raise MidiImportError("only drum notes (channel 10); no melody to learn from")
    if track is None:
        return pitched[max(sorted(pitched), key=lambda group: len(pitched[group]))]
    index = _track_index(song.track_names, track)
    notes = [
        n for (t, _), group_notes in sorted(pitched.items()) if t == index for n in group_notes
    ]
    if not notes:
        raise MidiImportError(f"track {_describe(song.track_names, index)} has no pitched notes")
    return notes


def _track_index(names: Sequence[str], track: str | int) -> int:
    """A track by index, or by name (case-insensitive; the first of that name).

    A name made of digits that no track carries counts as an index, so `--track 2` from a command
    line means the third track.
    """
    if isinstance(track, str):
        wanted = track.strip().casefold()
        for index, name in enumerate(names):
            if name.strip().casefold() == wanted:
                return index
        if wanted.isdecimal():
            track = int(wanted)
    if isinstance(track, int) and 0 <= track < len(names):
        return track
    known = ", ".join(_describe(names, i) for i in range(len(names)))
    raise MidiImportError(f"no track named or numbered {track!r}; tracks: {known}")


def _describe(names: Sequence[str], index: int) -> str:
    return f"{index} {names[index]!r}" if names[index] else str(index)


def _to_grid(ticks: int, ticks_per_beat: int) -> int:
    """File ticks → grid ticks, to the nearest (halves round up, so it never depends on parity)."""
    return (2 * ticks * TICKS_PER_QUARTER + ticks_per_beat) // (2 * ticks_per_beat)


def _on_grid(notes: Iterable[_Note], ticks_per_beat: int) -> list[_GridNote]:
    return [
        _GridNote(
            _to_grid(note.onset, ticks_per_beat),
            note.pitch,
            max(1, _to_grid(note.end - note.onset, ticks_per_beat)),
        )
        for note in notes
    ]


def _skyline(notes: Iterable[_GridNote]) -> list[_GridNote]:
    """The highest voice: the top note at each onset, cut where the next kept note starts.

    Notes that land on one onset (a chord, or two notes quantized together) keep the highest,
    the longer on a tie, so the result does not depend on the order they came in.
    """
    top: dict[int, _GridNote] = {}
    for note in notes:
        kept = top.get(note.onset)
        if kept is None or (note.pitch, note.duration) > (kept.pitch, kept.duration):
            top[note.onset] = note
    onsets = sorted(top)
    melody = [
        _GridNote(onset, top[onset].pitch, min(top[onset].duration, following - onset))
        for onset, following in pairwise(onsets)
    ]
    if onsets:
        melody.append(top[onsets[-1]])
    return melody


def _time_signatures(song: _Song) -> list[tuple[int, int, int]]:
    """(grid tick, numerator, denominator) changes in time order, opening with 4/4 if unsaid.

    Of two changes at one tick (a type-1 file may repeat the conductor's in another track), the
    later in the file wins.
    """
    changes: dict[int, tuple[int, int]] = {0: (4, 4)}
    for tick, numerator, denominator in sorted(song.time_signatures, key=lambda c: c[0]):
        changes[_to_grid(tick, song.ticks_per_beat)] = (numerator, denominator)
    return [(tick, *changes[tick]) for tick in sorted(changes)]


def _metre_ticks(numerator: int, denominator: int) -> int:
    """Bar length in grid ticks; a metre the models cannot represent raises."""
    ticks, remainder = divmod(numerator * 4 * TICKS_PER_QUARTER, denominator)
    if remainder or ticks <= 0:
        raise MidiImportError(
            f"metre {numerator}/{denominator} is not supported: its bars are not a whole "
            f"number of 1/{TICKS_PER_QUARTER}-quarter ticks"
        )
    if ticks > MAX_BAR_QUARTERS * TICKS_PER_QUARTER:
        raise MidiImportError(
            f"metre {numerator}/{denominator} is not supported: its bars are "
            f"{ticks / TICKS_PER_QUARTER:g} quarters long, the models know at most "
            f"{MAX_BAR_QUARTERS}"
        )
    return ticks


def _bar_lengths(changes: Sequence[tuple[int, int, int]], end: int) -> Iterator[int]:
    """Lengths in grid ticks of the bars from tick 0 until `end` is covered.

    A time signature that falls inside a bar starts a new bar there, as sequencers draw it; the
    bar it cuts keeps its shortened length.
    """
    position = 0
    current = 0
    bars = 0
    while position < end:
        bars += 1
        if bars > MAX_BARS:
            raise MidiImportError(f"longer than {MAX_BARS} bars: a damaged file, or not one piece")
        while current + 1 < len(changes) and changes[current + 1][0] <= position:
            current += 1
        length = _metre_ticks(*changes[current][1:])
        if current + 1 < len(changes):
            length = min(length, changes[current + 1][0] - position)
        yield length
        position += length


def _bar_rows(
    melody: Sequence[_GridNote], changes: Sequence[tuple[int, int, int]]
) -> tuple[list[int], list[list[int]]]:
    """bar_ticks and [bar, onset_ticks, pitch, duration_ticks] rows, from the first note's bar.

    The bars run until the last note has ended, as a score's bars run through a final tie.
    """
    end = max(note.onset + note.duration for note in melody)
    lengths = list(_bar_lengths(changes, end))
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length)
    first = bisect_right(starts, melody[0].onset) - 1
    rows = []
    for note in melody:
        bar = bisect_right(starts, note.onset) - 1
        rows.append([bar - first, note.onset - starts[bar], note.pitch, note.duration])
    return lengths[first:], rows


def _key(song: _Song) -> tuple[int, str]:
    """The key of every pitched note in the file, as a polyphonic corpus work's key is found."""
    weighted = [
        (note.pitch, float(note.duration))
        for notes in song.pitched().values()
        for note in _on_grid(notes, song.ticks_per_beat)
    ]
    tonic, mode, _ = detect_key(weighted)
    return tonic, mode


def _read_mood(path: Path) -> list[float] | None:
    """[valence, arousal] from the sidecar `path.with_suffix('.toml')`, None if there is none."""
    sidecar = path.with_suffix(".toml")
    if not sidecar.is_file():
        return None
    shown = f"sidecar {sidecar.name}"
    table = read_toml(sidecar, MidiImportError, "sidecar", shown=shown)
    unknown = sorted(set(table) - set(MOOD_KEYS))
    if unknown:
        raise MidiImportError(
            f"{shown}: {unknown[0]}: unknown key; known keys: {', '.join(MOOD_KEYS)}"
        )
    mood = []
    for key in MOOD_KEYS:
        if key not in table:
            raise MidiImportError(f"{shown}: {key}: missing (a number in -1..1)")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MidiImportError(f"{shown}: {key}: must be a number in -1..1, got {value!r}")
        if not -1.0 <= value <= 1.0:  # NaN fails too
            raise MidiImportError(f"{shown}: {key}: must be in -1..1, got {value!r}")
        mood.append(float(value))
    return mood
