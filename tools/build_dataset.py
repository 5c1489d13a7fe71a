"""Build livekomp's training corpus from the music21 corpus that ships inside the wheel.

    python tools/build_dataset.py [--out cache/dataset] [--jobs 2] [--limit N]

No download: the folk collections (Essen, O'Neill's, Ryan's Mammoth, Aird's), Palestrina's two upper
voices and the Bach chorales (soprano plus the chord under each half bar) are parsed once, with one
process per core, into `works.jsonl.gz`: one JSON object per work, with its notes on a grid of 12
ticks per quarter note, its bars, its key (Krumhansl–Kessler key finding, as livekomp evaluates
with) and its split. Works are split train/valid/test by a hash of their name, never by window, so
no tune is in two splits. Emotion proxies are not computed here: `livekomp.models.proxy` labels
phrases at training time, so fine-tuning labels the performer's MIDI with the same code.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
import time
import warnings
import zlib
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekomp.models.tokens import TICKS_PER_QUARTER  # noqa: E402
from livekomp.music.theory import detect_key  # noqa: E402

# (music21 composer/collection name, what to take from each score)
SOURCES = (
    ("essenFolksong", "melody"),
    ("oneills1850", "melody"),
    ("ryansMammoth", "melody"),
    ("airdsAirs", "melody"),
    ("palestrina", "upper_voices"),
    ("bach", "chorale"),
)
SPLITS = (("train", 80), ("valid", 10), ("test", 10))  # percentages, by work


def split_for(work_id: str) -> str:
    bucket = zlib.crc32(work_id.encode()) % 100
    for name, share in SPLITS:
        if bucket < share:
            return name
        bucket -= share
    raise AssertionError("split shares must add up to 100")


def _ticks(quarters: float) -> int:
    return round(float(quarters) * TICKS_PER_QUARTER)


def extract_part(part) -> tuple[list[list[int]], list[int]] | None:
    """A part's notes as [bar, onset_ticks_in_bar, midi_pitch, duration_ticks], and bar lengths.

    Chords keep their top note; grace notes are dropped; tied notes become one note. A pickup bar
    is placed at the end of its bar (music21's paddingLeft), so bar positions mean the same thing
    in every tune.
    """
    from music21 import stream

    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        return None
    notes: list[list[int]] = []
    bar_ticks: list[int] = []
    last_end_abs = None
    bar_start_abs = 0
    for bar, measure in enumerate(measures):
        length = _ticks(measure.barDuration.quarterLength)
        if length <= 0:
            return None
        bar_ticks.append(length)
        padding = _ticks(measure.paddingLeft) if bar == 0 else 0
        for element in measure.flatten().notes:
            duration = _ticks(element.duration.quarterLength)
            if duration <= 0:
                continue  # grace note
            pitch = max(p.midi for p in element.pitches)
            onset = padding + _ticks(element.offset)
            if onset >= length:
                continue
            tie = element.tie.type if element.tie is not None else None
            continues = tie in ("stop", "continue") and notes and notes[-1][2] == pitch
            if continues and last_end_abs == bar_start_abs + onset:
                notes[-1][3] += duration
                last_end_abs += duration
                continue
            notes.append([bar, onset, pitch, duration])
            last_end_abs = bar_start_abs + onset + duration
        bar_start_abs += length
    return (notes, bar_ticks) if len(notes) >= 8 else None


def chords_under(score, bar_ticks: list[int]) -> list[list[int]]:
    """The chord at the start of each half bar: [bar, half, root_pc, quality] (absolute pitch)."""
    from music21 import stream

    qualities = {"major": 0, "minor": 1, "diminished": 2}
    chordified = score.chordify()
    out: list[list[int]] = []
    for bar, measure in enumerate(chordified.getElementsByClass(stream.Measure)):
        if bar >= len(bar_ticks):
            break
        padding = _ticks(measure.paddingLeft) if bar == 0 else 0
        sounding = [
            (padding + _ticks(c.offset), c) for c in measure.flatten().getElementsByClass("Chord")
        ]
        for half in (0, 1):
            at = half * bar_ticks[bar] // 2
            current = [c for onset, c in sounding if onset <= at]
            if not current:
                continue
            chord = current[-1]
            quality = qualities.get(chord.quality)
            if quality is None or len(chord.pitches) < 2:
                continue
            out.append([bar, half, chord.root().pitchClass, quality])
    return out


def _key_of(pitch_weights: list[tuple[int, float]]) -> tuple[int, str]:
    tonic, mode, _ = detect_key(pitch_weights)
    return tonic, mode


def parse_file(task: tuple[str, str, str]) -> list[dict]:
    """Parse one corpus file into work records (an ABC collection holds many tunes)."""
    source, kind, path = task
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception as error:  # a corpus file music21 cannot read is skipped, and said
        return [{"error": f"{path}: {type(error).__name__}: {error}"}]
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    name = Path(path).stem
    records = []
    for index, score in enumerate(scores):
        work_id = f"{source}/{name}#{index}"
        try:
            records.extend(_score_records(source, kind, work_id, score))
        except Exception as error:
            records.append({"error": f"{work_id}: {type(error).__name__}: {error}"})
    return records


def _score_records(source: str, kind: str, work_id: str, score) -> list[dict]:
    parts = list(score.parts)
    if not parts:
        return []
    if kind == "chorale" and len(parts) != 4:
        return []
    voices = parts[:2] if kind == "upper_voices" else parts[:1]
    # The key is found from every part of a polyphonic work, from the tune alone otherwise;
    # each part is extracted once.
    keyed = parts if kind in ("chorale", "upper_voices") else voices
    by_part = [extract_part(p) for p in keyed]
    extracted = by_part[: len(voices)]
    key_notes = [(n[2], n[3]) for e in by_part if e for n in e[0]]
    if not key_notes:
        return []
    tonic, mode = _key_of(key_notes)
    split = split_for(work_id)
    records = []
    for voice, item in enumerate(extracted):
        if item is None:
            continue
        notes, bar_ticks = item
        record = {
            "id": work_id if len(voices) == 1 else f"{work_id}/v{voice}",
            "work": work_id,
            "source": source,
            "split": split,
            "tonic": tonic,
            "mode": mode,
            "bar_ticks": bar_ticks,
            "notes": notes,
        }
        if kind == "chorale":
            record["chords"] = chords_under(score, bar_ticks)
        records.append(record)
    return records


def _quiet_worker() -> None:
    """music21 warns about every odd corner of every old file; a parser process stays quiet."""
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def corpus_tasks(limit: int | None) -> list[tuple[str, str, str]]:
    from music21 import corpus

    tasks = []
    for source, kind in SOURCES:
        paths = sorted(str(p) for p in corpus.getComposer(source))
        if kind == "chorale":
            paths = [p for p in paths if p.endswith((".mxl", ".xml", ".krn"))]
        if limit is not None:
            paths = paths[:limit]
        tasks.extend((source, kind, p) for p in paths)
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cache" / "dataset")
    parser.add_argument("--jobs", type=int, default=2, help="parser processes (default 2)")
    parser.add_argument("--limit", type=int, help="at most N files per collection (a quick run)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    tasks = corpus_tasks(args.limit)
    # Big files first, so the last process is not left alone with a 10-second collection.
    tasks.sort(key=lambda t: -Path(t[2]).stat().st_size)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "works.jsonl.gz"
    partial = target.with_suffix(".partial")
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    errors: list[str] = []
    with (
        gzip.open(partial, "wt", encoding="utf-8") as out,
        Pool(args.jobs, initializer=_quiet_worker) as pool,
    ):
        for records in tqdm(
            pool.imap_unordered(parse_file, tasks), total=len(tasks), desc="parse", unit="file"
        ):
            for record in records:
                if "error" in record:
                    errors.append(record["error"])
                    continue
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                counts[f"{record['source']}:{record['split']}"] += 1
                notes[record["source"]] += len(record["notes"])
    partial.replace(target)
    stats = {
        "seconds": round(time.perf_counter() - started, 1),
        "files": len(tasks),
        "records": dict(sorted(counts.items())),
        "melody_notes": dict(sorted(notes.items())),
        "melody_notes_total": sum(notes.values()),
        "errors": len(errors),
    }
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (args.out / "errors.txt").write_text("\n".join(errors) + ("\n" if errors else ""))
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
