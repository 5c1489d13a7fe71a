"""Where a follower's notes fall on a MIDI clock master's beat grid, both heard by one JACK
receiver (`tools.peers.MidiDump`), so both are stamped by the same frame counter; the master's
ticks placed on the song position by `tools.peers.master_beats`. The follow test and the follow
benchmark measure with these."""

from __future__ import annotations

import bisect

FRAME_RATE = 48_000  # jackd -r 48000


def note_positions(events, ticks):
    """(frame, master beat) of every livekomp note-on, interpolated between the master's ticks."""
    frames = [frame for frame, _ in ticks]
    placed = []
    for frame, data in events:
        if data[0] & 0xF0 != 0x90 or data[2] == 0:
            continue
        i = bisect.bisect_right(frames, frame)
        if not 0 < i < len(frames):
            continue
        (f0, b0), (f1, b1) = ticks[i - 1], ticks[i]
        if b1 - b0 > 2 / 24:  # a Stop/Continue between them: not a running stretch
            continue
        placed.append((frame, b0 + (frame - f0) / (f1 - f0) * (b1 - b0)))
    return placed


def phase_errors_ms(notes, ticks, skip=()):
    """Each note against the master's tick on its sixteenth (the composer's grid)."""
    frames_of: dict[float, list[int]] = {}
    for frame, beat in ticks:  # a beat may be played twice (a Continue from earlier)
        frames_of.setdefault(beat, []).append(frame)
    errors = []
    for frame, beat in notes:
        nominal = round(beat * 4) / 4
        if nominal in frames_of and not any(lo <= nominal < hi for lo, hi in skip):
            tick_frame = min(frames_of[nominal], key=lambda f: abs(f - frame))
            errors.append((frame - tick_frame) / FRAME_RATE * 1e3)
    return errors
