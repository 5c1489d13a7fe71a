"""Does a style adapter move the melody toward its folder, and keep the folder's shape?

    python -m tools.style_check NAME --midi FOLDER [--adapters DIR] [--checkpoints DIR]
                                [--bars 32] [--seeds 3] [--setlist FILE] [--json FILE]

The style and the base models each write melody through the real composer path — `load_neural`
with the style loaded, `compose_bar` with `BarRequest(style=NAME)` (or the base style), each bar
accepted as played — in the moods of the folder's own bars and in the folder's key, for `--bars`
bars from each of `--seeds` seeds. Both are compared with the folder's melodies, as `finetune`
read them (`midi_import`: the highest voice of the busiest track):

- pitch classes above the tonic, and melodic intervals in semitones (pooled beyond an octave):
  Jensen–Shannon divergence to the folder's histogram, in bits (0 same, 1 disjoint). The style
  passes each when its divergence is at most `JS_SHARE` (half) of the base's;
- pitch-class entropy, in bits: at least `ENTROPY_SHARE` (80 %) of the folder's own, so a style
  that "moved" by collapsing onto a few pitches fails. Pitch classes, not MIDI pitches: the
  composer sets the melody's register by arousal (two octaves), whatever the folder's range, so
  an entropy over MIDI pitches would fail the base and every style alike on a wide folder. (It is
  reported too, as `pitch_entropy_bits`.)

Everything is in the folder's most common key: the composer plays in one key, and key finding
on a folder's tunes wavers between relatives (a D pentatonic tune is read as D major, B minor or
A major), so each tune's own tonic would smear the folder's histogram with pitch classes it
never plays.

The exit status is 0 when the composed melody passes, 1 when it does not, 2 when the check
cannot run. Two more views are reported, not judged: `model_alone`, the melody models sampled
without the composer's guards (`model_melody`), in a few of the folder's moods — what the
adapter itself learned; and with `--setlist`, the setlist rehearsed with the style and without
it (the setlist's moods, not the folder's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

JS_SHARE = 0.5  # the style's divergence to the folder, at most this share of the base's
ENTROPY_SHARE = 0.8  # the style's pitch entropy, at least this share of the folder's
INTERVAL_RANGE = 12  # melodic intervals beyond an octave are pooled at ±12 (as tools.evaluate)
MELODY_CHANNEL = 0  # the melody's MIDI channel in a rehearsal's set.mid

Melody = tuple[int, Sequence[int]]  # (tonic pitch class, the melody's MIDI pitches in order)


class StyleCheckError(Exception):
    """The check cannot run (no such style, no usable MIDI); the message says why."""


def js_divergence_bits(p: Counter, q: Counter) -> float:
    """Jensen–Shannon divergence between two histograms, in bits; 1 when either is empty."""
    total_p, total_q = sum(p.values()), sum(q.values())
    if not total_p or not total_q:
        return 1.0
    divergence = 0.0
    for key in set(p) | set(q):
        a, b = p[key] / total_p, q[key] / total_q
        m = (a + b) / 2
        divergence += sum(x * math.log2(x / m) for x in (a, b) if x > 0) / 2
    return max(0.0, divergence)


def entropy_bits(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values() if n) if total else 0.0


@dataclass(frozen=True)
class Shape:
    """What the check compares of a set of melodies."""

    notes: int
    pitch_classes: Counter  # pitch class above the tonic → notes
    intervals: Counter  # semitones from one note to the next, clamped to ±INTERVAL_RANGE
    pitches: Counter  # MIDI pitch → notes

    @property
    def pitch_entropy_bits(self) -> float:
        return entropy_bits(self.pitches)

    @property
    def pitch_class_entropy_bits(self) -> float:
        return entropy_bits(self.pitch_classes)


def shape(melodies: Iterable[Melody]) -> Shape:
    pitch_classes: Counter = Counter()
    intervals: Counter = Counter()
    pitches: Counter = Counter()
    for tonic, melody in melodies:
        pitches.update(melody)
        pitch_classes.update((p - tonic) % 12 for p in melody)
        intervals.update(
            max(-INTERVAL_RANGE, min(INTERVAL_RANGE, b - a)) for a, b in itertools.pairwise(melody)
        )
    return Shape(sum(pitches.values()), pitch_classes, intervals, pitches)


@dataclass(frozen=True)
class Verdict:
    """The style's figures against the base's, and whether each check passed."""

    folder: Shape
    style: Shape
    base: Shape

    def divergence(self, field: str, who: str) -> float:
        return js_divergence_bits(getattr(getattr(self, who), field), getattr(self.folder, field))

    @property
    def checks(self) -> dict[str, bool]:
        moved = {
            f"{field}_moved": self.divergence(field, "style")
            <= JS_SHARE * self.divergence(field, "base")
            for field in ("pitch_classes", "intervals")
        }
        kept = (
            self.style.pitch_class_entropy_bits
            >= ENTROPY_SHARE * self.folder.pitch_class_entropy_bits
        )
        return {**moved, "entropy_kept": kept}

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def as_dict(self) -> dict[str, object]:
        """The figures, rounded, for a report or a JSON file."""
        return {
            "notes": {who: getattr(self, who).notes for who in ("folder", "style", "base")},
            **{
                f"{field}_js_bits": {
                    who: round(self.divergence(field, who), 4) for who in ("style", "base")
                }
                for field in ("pitch_classes", "intervals")
            },
            "pitch_class_entropy_bits": {
                who: round(getattr(self, who).pitch_class_entropy_bits, 3)
                for who in ("folder", "style", "base")
            },
            "pitch_entropy_bits": {
                who: round(getattr(self, who).pitch_entropy_bits, 3)
                for who in ("folder", "style", "base")
            },
            "distinct_pitches": {
                who: len(getattr(self, who).pitches) for who in ("folder", "style", "base")
            },
            "checks": self.checks,
            "ok": self.ok,
            "thresholds": {"js_share": JS_SHARE, "entropy_share": ENTROPY_SHARE},
        }


def judge(folder: Iterable[Melody], style: Iterable[Melody], base: Iterable[Melody]) -> Verdict:
    return Verdict(shape(folder), shape(style), shape(base))


# --- where the melodies come from ---


@dataclass(frozen=True)
class Folder:
    """A folder's melodies as `finetune` reads them, and the moods and key to compose in."""

    melodies: list[Melody]
    moods: list[tuple[float, float]]  # each bar's (valence, arousal), in file order
    tonic: int
    beats_per_bar: int


def read_folder(midi: Path, checkpoints: Path, track: str | None = None) -> Folder:
    from livekomp.models import checkpoint, data, midi_import, proxy, tokens

    records, _skipped = midi_import.read_midi_folder(midi, track=track)
    if not records:
        raise StyleCheckError(f"{midi}: no usable MIDI files")
    stats = proxy.ProxyStats(**checkpoint.read_description("melody", checkpoints)["proxy_stats"])
    moods = [mood for record in records for mood in data.bar_labels(record, stats)]
    tonics: Counter = Counter()
    bar_beats: Counter = Counter()
    for record in records:
        tonics[record["tonic"]] += len(record["notes"])
        for ticks in record["bar_ticks"]:
            if ticks % tokens.TICKS_PER_QUARTER == 0:
                bar_beats[ticks // tokens.TICKS_PER_QUARTER] += 1
    tonic = tonics.most_common(1)[0][0]
    return Folder(
        melodies=[(tonic, [n[2] for n in r["notes"]]) for r in records],
        moods=moods,
        tonic=tonic,
        beats_per_bar=bar_beats.most_common(1)[0][0] if bar_beats else 4,
    )


def composed_melody(composer, style: str, folder: Folder, bars: int) -> Melody:
    """`bars` bars of melody from `composer` in `style`, in the folder's moods and key."""
    from livekomp.music.phrase import BarRequest, Part

    pitches: list[int] = []
    for index in range(bars):
        valence, arousal = folder.moods[index % len(folder.moods)]
        request = BarRequest(
            index, folder.beats_per_bar, folder.tonic, valence, arousal, style=style
        )
        bar = composer.compose_bar(request)
        composer.accept(request, bar)
        pitches += [n.pitch for n in sorted(bar.parts[Part.MELODY], key=lambda n: n.start_beats)]
    return folder.tonic, pitches


def model_melody(
    model, moods: Sequence[tuple[float, float]], tonic: int, seed: int, notes_per_mood: int = 32
) -> Melody:
    """Notes sampled from a melody model alone (temperature 1, no nucleus), `notes_per_mood`
    in each mood, in 4/4 and in `tonic`.

    The composer guards what it plays (the mode's scale, a register, a penalty on repeats), which
    hides what an adapter did to the model; this is the model's own voice, so a check of it shows
    whether the adapter taught it to say one thing over and over.
    """
    import torch

    from livekomp.models import tokens

    generator = torch.Generator().manual_seed(seed)
    metre = torch.tensor([tokens.metre_index(4 * tokens.TICKS_PER_QUARTER)])
    steps: list[tokens.Step] = []
    pitches: list[int] = []

    def draw(logits: torch.Tensor) -> torch.Tensor:  # logits (1, 1, V), START masked
        logits = logits[0, -1].clone()
        logits[-1] = -torch.inf
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[None]

    with torch.no_grad():
        for mood in moods:
            for _ in range(notes_per_mood):
                window = [tokens.START, *steps[-(model.config.context - 1) :]]
                rows = torch.tensor([[[s.position, s.pitch, s.duration] for s in window]])
                mood_rows = torch.tensor([[mood] * len(window)], dtype=torch.float32)
                hidden, _, _ = model.trunk(rows, mood_rows, metre, *model.empty_cache())
                last = hidden[:, -1:]  # (1, 1, D)
                unknown = torch.zeros((1, 1), dtype=torch.long)
                position = draw(model.heads(last, unknown, unknown)[0])
                pitch = draw(model.heads(last, position, unknown)[1])
                duration = draw(model.heads(last, position, pitch)[2])
                steps.append(tokens.Step(int(position), int(pitch), int(duration)))
                pitches.append(tokens.pitch_of(int(pitch), tonic))
    return tonic, pitches


def load_style_composer(name: str, seed: int, checkpoints: Path, adapters: Path):
    from livekomp.models.neural import load_neural

    composer = load_neural(seed, checkpoints, device="cpu", styles=[name], adapters_dir=adapters)
    if name in composer.refused_styles:
        raise StyleCheckError(composer.refused_styles[name])
    return composer


def check_composed(
    name: str,
    folder: Folder,
    checkpoints: Path,
    adapters: Path,
    *,
    bars: int = 32,
    seeds: Sequence[int] = (1, 2, 3),
) -> Verdict:
    """The style's and the base's melodies, composed bar by bar, judged against the folder."""
    from livekomp.models.neural import load_neural
    from livekomp.music.phrase import BASE_STYLE

    styled, base = [], []
    for seed in seeds:
        composer = load_style_composer(name, seed, checkpoints, adapters)
        styled.append(composed_melody(composer, name, folder, bars))
        plain = load_neural(seed, checkpoints, device="cpu")
        base.append(composed_melody(plain, BASE_STYLE, folder, bars))
    return judge(folder.melodies, styled, base)


def melody_of_midi(path: Path, tonic: int) -> Melody:
    """The melody channel's pitches of a rendered set, in onset order (highest first)."""
    import mido

    onsets = []
    for track in mido.MidiFile(path).tracks:
        now = 0
        for message in track:
            now += message.time
            is_on = message.type == "note_on" and message.velocity > 0
            if is_on and message.channel == MELODY_CHANNEL:
                onsets.append((now, -message.note))
    return tonic, [-negative for _, negative in sorted(onsets)]


def check_model_alone(
    name: str,
    folder: Folder,
    checkpoints: Path,
    adapters: Path,
    *,
    moods: int = 4,
    seeds: Sequence[int] = (1, 2, 3),
) -> Verdict:
    """The style's melody model and the base's, sampled alone (`model_melody`) in `moods` of the
    folder's moods (spread over its bars), judged against the folder."""
    from livekomp.models import checkpoint, lora

    info = lora.read_style(name, adapters)
    base = checkpoint.load("melody", checkpoints).eval()
    sha = checkpoint.read_description("melody", checkpoints)["sha256"]
    styled = lora.merged(info, "melody", base, sha) if "melody" in info.targets else base
    step = max(1, len(folder.moods) // moods)
    chosen = folder.moods[::step][:moods]
    melodies = {
        who: [model_melody(model, chosen, folder.tonic, seed) for seed in seeds]
        for who, model in (("style", styled), ("base", base))
    }
    return judge(folder.melodies, melodies["style"], melodies["base"])


def check_rehearsed(
    name: str, folder: Folder, setlist: Path, checkpoints: Path, adapters: Path
) -> Verdict:
    """The setlist rehearsed with the style and without it, judged against the folder."""
    from livekomp.composer import ComposerSettings
    from livekomp.inputs.setlist import load_setlist
    from livekomp.music.phrase import BASE_STYLE
    from livekomp.music.theory import parse_key
    from livekomp.rehearsal import rehearse

    parsed = load_setlist(setlist)
    settings = ComposerSettings(device="cpu", checkpoints=str(checkpoints), adapters=str(adapters))
    tonic = parse_key(parsed.key)
    melodies = {}
    with tempfile.TemporaryDirectory() as scratch:
        for style in (name, BASE_STYLE):
            result = rehearse(parsed, Path(scratch) / style, composer=settings, style=style)
            melodies[style] = melody_of_midi(result.midi_path, tonic)
    return judge(folder.melodies, [melodies[name]], [melodies[BASE_STYLE]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.style_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", help="the style adapter's name")
    parser.add_argument("--midi", type=Path, required=True, help="the folder it learned from")
    parser.add_argument("--adapters", type=Path, default=Path("adapters"))
    parser.add_argument("--checkpoints", type=Path)
    parser.add_argument("--track", help="the melody's track, as given to finetune")
    parser.add_argument("--bars", type=int, default=32, help="bars per seed (default 32)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N (default 3)")
    parser.add_argument("--setlist", type=Path, help="also rehearse this setlist both ways")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.bars < 1 or args.seeds < 1:
        parser.error("--bars and --seeds must be at least 1")

    from livekomp.composer import StyleUnavailable
    from livekomp.inputs.setlist import SetlistError
    from livekomp.models import checkpoint, lora, midi_import

    checkpoints = args.checkpoints or checkpoint.DEFAULT_DIR
    try:
        folder = read_folder(args.midi, checkpoints, args.track)
        seeds = range(1, args.seeds + 1)
        results = {
            "composed": check_composed(
                args.name, folder, checkpoints, args.adapters, bars=args.bars, seeds=seeds
            ).as_dict(),
            "model_alone": check_model_alone(
                args.name, folder, checkpoints, args.adapters, seeds=seeds
            ).as_dict(),
        }
        if args.setlist:
            results["rehearsed"] = check_rehearsed(
                args.name, folder, args.setlist, checkpoints, args.adapters
            ).as_dict()
    except (
        StyleCheckError,
        StyleUnavailable,
        SetlistError,
        lora.AdapterError,
        midi_import.MidiImportError,
        checkpoint.CheckpointError,
        OSError,
    ) as error:
        print(f"style_check: error: {error}", file=sys.stderr)
        return 2
    text = json.dumps({"style": args.name, "midi": str(args.midi), **results}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if results["composed"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
