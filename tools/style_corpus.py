"""A small style corpus the LoRA tests write for themselves: tunes in D major pentatonic, in a
strongly dotted rhythm (dotted eighth + sixteenth, all the way), as MIDI files.

The base models learned from folk tunes and chorales in every scale and rhythm, so both traits are
far from what they write on their own: an adapter trained on this must move them measurably.
"""

from __future__ import annotations

import random
from pathlib import Path

import mido

TONIC = 2  # D
PENTATONIC = (0, 2, 4, 7, 9)  # scale degrees above the tonic, in semitones
DOTTED = (0.75, 0.25)  # beats: the long-short pair that makes the rhythm
TICKS_PER_BEAT = 480


TRIPLETS = (1 / 3, 1 / 3, 1 / 3)  # off the sixteenth grid: no groove example comes of them


def tune(
    rng: random.Random, bars: int = 16, rhythm: tuple[float, ...] = DOTTED
) -> list[tuple[float, int, float]]:
    """(start_beats, pitch, duration_beats) of one tune: a walk on the scale, in `rhythm` (one
    beat's note lengths, repeated)."""
    notes = []
    degree = 5 + rng.randrange(5)  # index into three octaves of the scale
    beat = 0.0
    for _ in range(bars * 4):
        for length in rhythm:
            degree = max(0, min(14, degree + rng.choice((-2, -1, -1, 1, 1, 2))))
            octave, step = divmod(degree, 5)
            notes.append((beat, 48 + TONIC + 12 * octave + PENTATONIC[step], length))
            beat += length
    return notes


def write_tune(path: Path, notes: list[tuple[float, int, float]]) -> None:
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    events = []
    for start, pitch, length in notes:
        on = round(start * TICKS_PER_BEAT)
        events.append((on, 1, mido.Message("note_on", note=pitch, velocity=90)))
        events.append(
            (on + round(length * TICKS_PER_BEAT) - 10, 0, mido.Message("note_off", note=pitch))
        )
    now = 0
    for at, _order, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=at - now))
        now = at
    midi.tracks.append(track)
    midi.save(path)


def write_corpus(
    folder: Path, songs: int = 14, seed: int = 7, rhythm: tuple[float, ...] = DOTTED
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(songs):
        write_tune(folder / f"tune{i:02d}.mid", tune(rng, rhythm=rhythm))
    return folder


def pentatonic_share(pitches: list[int], tonic: int) -> float:
    """The share of pitches on the pentatonic scale of `tonic`."""
    return sum((p - tonic) % 12 in PENTATONIC for p in pitches) / len(pitches)
