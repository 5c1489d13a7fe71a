"""Look and listen: 8 bars of the neural composer in each mood quadrant, for the model card.

    python tools/quadrant_demos.py [--out checkpoints/demos] [--seed 3] [--composer neural]

For each quadrant it rehearses a one-cue setlist (no voice) with `livekomp rehearse --audio`, and
writes beside the model card a piano roll (`QUADRANT.png`: melody, chords, bass and the drum hits)
and the audio (`QUADRANT.wav`, downmixed to mono at 11 kHz so the four stay near 1.5 MB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import mido
import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parent.parent

QUADRANTS = {
    "happy-excited": (0.7, 0.7, 132),
    "happy-calm": (0.7, -0.7, 92),
    "sad-excited": (-0.7, 0.7, 132),
    "sad-calm": (-0.7, -0.7, 88),
}
BARS = 8
DEMO_RATE = 11_025
TAIL_S = 1.5
PART_COLOURS = {0: ("melody", "tab:red"), 1: ("chords", "tab:blue"), 2: ("bass", "tab:green")}


def setlist(valence: float, arousal: float, bpm: int, seed: int) -> str:
    return (
        f'title = "demo"\nbpm = {bpm}\nbeats_per_bar = 4\nbars = {BARS}\nkey = "D"\n'
        f"seed = {seed}\n\n[[cue]]\nbar = 0\nvalence = {valence}\narousal = {arousal}\n"
    )


def notes_of(path: Path) -> list[tuple[float, float, int, int]]:
    """(start_beats, end_beats, pitch, channel) of every note in a MIDI file."""
    midi = mido.MidiFile(path)
    rows, sounding = [], {}
    for track in midi.tracks:
        now = 0
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                sounding[message.channel, message.note] = now
            elif message.type in ("note_off", "note_on"):
                start = sounding.pop((message.channel, message.note), None)
                if start is not None:
                    beats = midi.ticks_per_beat
                    rows.append((start / beats, now / beats, message.note, message.channel))
    return rows


def draw(rows, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (pitched, drums) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for channel, (name, colour) in PART_COLOURS.items():
        part = [r for r in rows if r[3] == channel]
        for start, end, pitch, _ in part:
            pitched.broken_barh([(start, end - start)], (pitch - 0.4, 0.8), color=colour)
        pitched.plot([], [], color=colour, linewidth=6, label=f"{name} ({len(part)})")
    hits = [r for r in rows if r[3] == 9]
    drums.scatter([r[0] for r in hits], [r[2] for r in hits], s=6, color="black")
    for axis in (pitched, drums):
        for bar in range(BARS + 1):
            axis.axvline(4 * bar, color="0.8", linewidth=0.6)
    pitched.set_ylabel("MIDI pitch")
    drums.set_ylabel("drum note")
    drums.set_xlabel("beats")
    pitched.set_title(title)
    pitched.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "demos")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--composer", default="neural", choices=["neural", "rules"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (valence, arousal, bpm) in QUADRANTS.items():
        with tempfile.TemporaryDirectory(prefix="livekomp-demo-") as folder:
            folder = Path(folder)
            (folder / "set.toml").write_text(setlist(valence, arousal, bpm, args.seed))
            command = [
                sys.executable, "-m", "livekomp.cli", "-q", "rehearse", str(folder / "set.toml"),
                "--out", str(folder / "out"), "--audio", "--voice", "none",
                "--composer", args.composer,
            ]  # fmt: skip
            subprocess.run(command, check=True, cwd=ROOT)
            rows = notes_of(folder / "out" / "set.mid")
            title = f"{args.composer}, {name}: valence {valence:+}, arousal {arousal:+}, {bpm} BPM"
            draw(rows, title, args.out / f"{name}.png")
            rate, audio = wavfile.read(folder / "out" / "set.wav")
            mono = audio.astype(np.float64).mean(axis=1) if audio.ndim == 2 else audio
            if audio.dtype == np.int16:
                mono /= 32768.0
            keep_s = BARS * 4 * 60 / bpm + TAIL_S  # the bars and their last notes' release
            demo = resample_poly(mono[: round(keep_s * rate)], DEMO_RATE, rate)
            pcm = np.clip(np.round(demo * 32767), -32768, 32767).astype(np.int16)
            wavfile.write(args.out / f"{name}.wav", DEMO_RATE, pcm)
        print(f"wrote {args.out / name}.png and .wav")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
