"""Write checkpoints/MODEL_CARD.md from the measured figures, so the card never disagrees with them.

    python tools/model_card.py

Reads `checkpoints/metrics.json` (tools/train.py), `checkpoints/evaluation.json`
(tools/evaluate.py) and `checkpoints/bench.json` (`python -m tools.bench tokens/bar/sweep`, with
`--json`), and the dataset's `cache/dataset/stats.json` when it is there.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"


def arrangement_section(evaluation: dict) -> str:
    """Bar by bar, per mood quadrant: the mode, the melody on top, its shape against the corpus."""
    out = [
        "### Arrangement, bar by bar\n",
        "Per mood quadrant (`tools/arrangement.py`): the share of bars whose key finding on the "
        "set's tonic gives the mode valence asks for (|valence| ≥ 0.4), of melody notes above "
        "every chord note sounding at their onset, and of those doubled by one; the median per "
        "4-bar window of the melody's repeated-pitch share, distinct pitches and notes per bar, "
        "with the interquartile range of "
        f"{evaluation['corpus_phrases']:,} held-out corpus 4-bar phrases of the same proxy-mood "
        "quadrant in brackets (✓ inside it).\n",
    ]
    rows = []
    for composer in ("neural", "rules"):
        if composer not in evaluation:
            continue
        quadrants = evaluation[composer]["arrangement_by_quadrant"]
        for name, figures in [*quadrants.items(), ("all", evaluation[composer]["arrangement"])]:
            cells = [composer, name]
            for key in ("bars_in_mode", "phrases_in_mode", "melody_above_chords", "melody_doubled"):
                value = figures[key]
                cells.append("–" if value is None else f"{100 * value:.1f} %")
            for key in ("repeated_share", "distinct_per_4_bars", "notes_per_bar"):
                entry = figures[key]
                text = f"{entry['median']:.2f}"
                if "corpus_iqr" in entry:
                    low, high = entry["corpus_iqr"]
                    text += f" [{low:.2f}–{high:.2f}]{' ✓' if entry['inside'] else ''}"
                cells.append(text)
            rows.append(cells)
    headers = [
        "composer", "quadrant", "bars in mode", "phrases in mode", "melody on top", "doubled",
        "repeated pitch", "distinct / 4 bars", "notes / bar",
    ]  # fmt: skip
    out.append(table(headers, rows) + "\n")
    accuracy = [
        f"{composer} {100 * evaluation[composer]['two_sample_accuracy']:.1f} %"
        for composer in ("neural", "rules")
        if evaluation.get(composer, {}).get("two_sample_accuracy") is not None
    ]
    if accuracy:
        out.append(
            "Classifier two-sample test (a logistic regression on interval, contour and duration "
            "histograms, trained to tell 8-bar generated melodies from held-out corpus ones; "
            "its accuracy on melodies it did not see, 50 % meaning it cannot tell): "
            + ", ".join(accuracy)
            + ".\n"
        )
    neural = evaluation.get("neural", {})
    rules = evaluation.get("rules", {})
    if neural:
        overall = neural["arrangement"]
        outside = [
            f"{name} {key.replace('_', ' ')} {figures[key]['median']:.2f} against "
            f"{figures[key]['corpus_iqr'][0]:.2f}–{figures[key]['corpus_iqr'][1]:.2f}"
            for name, figures in neural["arrangement_by_quadrant"].items()
            for key in ("repeated_share", "distinct_per_4_bars")
            if "corpus_iqr" in figures[key] and not figures[key]["inside"]
        ]

        def goal(text: str, met: bool) -> str:
            return f"- {text}: {'met' if met else 'missed'}"

        two_sample = neural.get("two_sample_accuracy")
        lines = [
            "The issue's goals for the neural composer, against these figures:\n",
            goal(f"bars in the asked mode ≥ 97 % ({100 * overall['bars_in_mode']:.1f} %)",
                 overall["bars_in_mode"] >= 0.97),
            goal(f"phrases in the asked mode ≥ 98 % ({100 * overall['phrases_in_mode']:.1f} %)",
                 overall["phrases_in_mode"] >= 0.98),
            goal(f"melody above the chords ≥ 95 % ({100 * overall['melody_above_chords']:.1f} %)",
                 overall["melody_above_chords"] >= 0.95),
            goal(f"doubled ≤ 3 % ({100 * overall['melody_doubled']:.1f} %)",
                 overall["melody_doubled"] <= 0.03),
            goal("repeated-pitch share and distinct pitches per 4 bars inside the corpus's "
                 "range in every quadrant"
                 + (f" (outside: {'; '.join(outside)})" if outside else ""), not outside),
            goal(f"arousal–density ρ ≥ 0.9 ({neural['arousal_density_rho']:.3f})",
                 neural["arousal_density_rho"] >= 0.9),
        ]  # fmt: skip
        if two_sample is not None and rules.get("two_sample_accuracy") is not None:
            lines.append(
                goal(
                    f"two-sample classifier ≤ 65 % and below the rules' ({100 * two_sample:.1f} "
                    f"% against {100 * rules['two_sample_accuracy']:.1f} %)",
                    two_sample <= 0.65 and two_sample < rules["two_sample_accuracy"],
                )
            )
        out.append("\n".join(lines) + "\n")
    demos = sorted((CHECKPOINTS / "demos").glob("*.png"))
    if demos:
        out.append(
            "Look and listen (`tools/quadrant_demos.py`: 8 bars of the neural composer per "
            "quadrant, in D, no voice; the audio downmixed to 11 kHz mono): "
            + ", ".join(
                f"{png.stem} ([roll](demos/{png.name}), [audio](demos/{png.stem}.wav))"
                for png in demos
            )
            + ".\n"
        )
    return "\n".join(out)


# Which benchmark wrote a JSON file, by a key only its result has; anything else is `bar`.
BENCH_KINDS = (("kv_cache_torch", "tokens"), ("xy_messages", "sweep"), ("runs", "training"))


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def size_kb(name: str) -> str:
    path = CHECKPOINTS / f"{name}.safetensors"
    return f"{path.stat().st_size / 1024:,.0f} KB" if path.is_file() else "—"


def held_out_text(kind: str, figures: dict) -> str:
    if kind == "harmony":
        return f"NLL {figures['test_nll']:.3f}, accuracy {pct(figures['test_accuracy'])}"
    if kind == "groove":
        return (
            f"onset BCE {figures['test_onset_bce']:.4f}, "
            f"accent MSE {figures['test_accent_mse']:.4f}"
        )
    return (
        f"pitch NLL {figures['test_pitch_nll']:.3f}, position {figures['test_position_nll']:.3f}, "
        f"duration {figures['test_duration_nll']:.3f}; pitch accuracy "
        f"{pct(figures['test_pitch_accuracy'])}"
    )


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """One figure, or the lowest and highest of several."""
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}–{fmt.format(high)}"


def processes_section(training: dict) -> str:
    """One process against several under torchrun (`python -m tools.bench training`)."""
    runs = training["runs"]
    names = list(dict.fromkeys(run.get("name", str(run["processes"])) for run in runs))
    by_name = {n: [r for r in runs if r.get("name", str(r["processes"])) == n] for n in names}

    def label(name: str) -> str:
        first = by_name[name][0]
        threads = next(iter(first["models"].values()))["threads"]
        return f"{first['processes']} × {threads} thread{'s' if threads > 1 else ''}"

    loads = [load for run in runs for load in run["load_average"]]
    repeats = training.get("repeats", 1)
    how_often = "once each" if repeats == 1 else f"{repeats} times each, in turn"
    out = [
        "## Training on several processes\n",
        "`tools/train.py` also runs under torchrun (`torchrun --standalone --nproc_per_node=N "
        "tools/train.py …`): each process takes 1/N of every batch and DistributedDataParallel "
        "averages the gradients (gloo on the CPU, NCCL with a GPU per process), so one step sees "
        "the samples one process would; rank 0 evaluates and writes the same checkpoint files. "
        "`python -m tools.bench training` ran the runs below (processes × threads each: "
        f"{', '.join(label(name) for name in names)}) with the same dataset and arguments, "
        f"{how_often}, "
        f"on this machine's {training['cpu_count']} cores while other work shared them (load "
        f"average {min(loads):.1f}–{max(loads):.1f})"
        + ("; times are the lowest–highest of the repeats" if repeats > 1 else "")
        + f":\n\n```sh\n{training.get('command', 'python -m tools.bench training')}\n```\n",
    ]
    rows = []
    same = True
    for kind in runs[0]["models"]:
        for name in names:
            figures = [run["models"][kind] for run in by_name[name]]
            texts = {held_out_text(kind, f) for f in figures}
            same = same and len(texts) == 1
            rows.append(
                [
                    kind,
                    figures[0]["processes"],
                    figures[0]["threads"],
                    f"{figures[0]['samples_seen']:,}",
                    " / ".join(sorted(texts)),
                    spread([f["train_minutes"] for f in figures]),
                    spread([f["wall_minutes"] for f in figures]),
                ]
            )
    header = ["model", "processes", "threads each", "samples seen", "held-out (test)"]
    out.append(table([*header, "training min", "wall min"], rows) + "\n")
    if same and repeats > 1:
        out.append("Every repeat of a run gave the same held-out figures (all is seeded).\n")
    out.append(
        "Several processes differ from one in held-out figures only through dropout: each "
        "process draws its own masks, over its part of the batch. Without dropout the runs "
        "follow the same gradients, and `tests/models/test_train.py` finds tiny models' held-out "
        "losses equal to 1e-4 on 1 and 2 processes.\n"
    )
    commands = "".join(
        f"{by_name[name][0]['command']}\n"
        f"# {spread([run['wall_s'] / 60 for run in by_name[name]], '{:.1f}')} min\n"
        for name in names
    )
    out.append(
        "The runs, start to exit (interpreters, data preparation and evaluation included):\n\n"
        f"```sh\n{commands}```\n"
    )
    fastest = {name: min(run["wall_s"] for run in by_name[name]) for name in names}
    one = fastest[names[0]]
    out.append(
        f"At their fastest, against {label(names[0])}: "
        + ", ".join(
            f"{label(name)} took {fastest[name] / one:.2f}× its wall time" for name in names[1:]
        )
        + ". Each process prepares the whole dataset itself and the machine's threads are "
        "divided among the processes, so on a small machine more processes win back at most "
        "what fewer threads lose to contention; the design pays where each process has cores "
        "or a GPU of its own.\n"
    )
    return "\n".join(out)


def render() -> str:
    metrics = load(CHECKPOINTS / "metrics.json")
    evaluation = load(CHECKPOINTS / "evaluation.json")
    bench = load(CHECKPOINTS / "bench.json")
    stats = load(ROOT / "cache" / "dataset" / "stats.json") or metrics.get("dataset", {})
    configs = {k: load(CHECKPOINTS / f"{k}.json") for k in ("melody", "harmony", "groove")}
    melody, harmony, groove = (metrics.get(k, {}) for k in ("melody", "harmony", "groove"))
    distribution = metrics.get("proxy_distribution", {})
    out: list[str] = []
    add = out.append

    add("# livekomp model card\n")
    add(
        "Three small models compose for livekomp's neural composer (`livekomp/models/`). They were "
        "trained here, on a 2-core CPU, on the music that ships inside the music21 wheel. "
        "This card "
        "is written by `tools/model_card.py` from the figures the training, evaluation and "
        "benchmark scripts wrote; the commands are at the end.\n"
    )
    add("## The models\n")
    rows = []
    for kind, what in (
        (
            "melody",
            "decoder-only transformer over notes (one step per note: position, pitch, "
            "duration), conditioned on valence/arousal per note; KV cache; attention projections "
            "`q_proj`/`k_proj`/`v_proj`/`o_proj`",
        ),
        (
            "harmony",
            "MLP: a half bar's melody (pitch-class weights, first and last note), the "
            "chord before and the mood → one of 36 chords (12 roots × major/minor/diminished)",
        ),
        (
            "groove",
            "MLP: mood, metre and the bar before → per-sixteenth onset probability and "
            "agogic accent for the accompaniment",
        ),
    ):
        config = configs[kind]
        rows.append(
            [
                kind,
                what,
                f"{config.get('parameters', 0):,}",
                size_kb(kind),
                config.get("config", ""),
            ]
        )
    add(table(["model", "what", "parameters", "weights", "config"], rows) + "\n")
    add(
        "Drums, swing and velocities have no data in this corpus (folk tunes and vocal music carry "
        "no drum parts and almost no dynamics), so no model names a drum. The drums are read from "
        "the groove model's output for the bar (`livekomp/music/drums.py`): the model decides "
        "where the kicks go (its onsets with the strongest accents), where in each backbeat beat "
        "the snare falls (the beat or its off-beat eighth, whichever it accents more), where the "
        "hats or ride play beyond a steady pulse (its onsets), where ghost notes, an open hat and "
        "fill notes may fall (its onsets), and how hard each hit is (its accent against the "
        "bar's mean). Tables decide what it cannot say: per metre (1 to 8 beats, every metre the "
        "tokens know) which beats are the backbeat, in full and half time; per band of arousal "
        "(nudged by the density control) which instruments play (General MIDI numbers: side "
        "stick when calm, ride when most excited), how many kicks, the pulse under the hats, the "
        "odds of ghost notes and open hats, and the kit's level. Fills come from the bar index "
        "(the last beat of every fourth bar, the last two of every eighth), a crash on the bar "
        "after. So a style adapter's groove is heard in the drums. Velocity follows arousal × "
        "intensity in every part, shaped by the groove model's accents.\n"
    )

    add("## Data\n")
    if stats:
        notes = stats.get("melody_notes", {})
        records = stats.get("records", {})
        rows = []
        for source in sorted(notes):
            split = {s: records.get(f"{source}:{s}", 0) for s in ("train", "valid", "test")}
            rows.append(
                [source, f"{notes[source]:,}", split["train"], split["valid"], split["test"]]
            )
        add(table(["source", "melody notes", "train", "valid", "test"], rows) + "\n")
        add(
            f"{stats.get('melody_notes_total', 0):,} melody notes from {stats.get('files')} corpus "
            f"files, parsed in {stats.get('seconds', 0) / 60:.0f} min on 2 processes "
            f"({stats.get('errors', 0)} files failed). Counts are voices: Palestrina contributes "
            "its two upper voices, the chorales their soprano.\n"
        )
    add(
        "- `tools/build_dataset.py` parses each work with music21: the top note of each chord, "
        "ties joined, grace notes dropped, onsets and durations on a grid of 12 ticks per quarter "
        "(triplets and compound metres are exact), pickup bars placed at the end of their bar. "
        "The key of each work is found by Krumhansl–Kessler key finding (the same finder the "
        "evaluation uses) and pitches are stored relative to its tonic.\n"
        "- The split is by work (a CRC-32 of the work's name: 80 / 10 / 10 %), never by window, "
        "so no tune is in two splits; Palestrina's two voices of a work share its split.\n"
        "- Chords (harmony model only): the chorales' chordified sonority at the start of each "
        "half bar, its root relative to the tonic and its quality; other qualities are skipped. "
        "The corpus's roman-numeral (RomanText) files have chords but no melody to pair them "
        "with, so they are not used.\n"
    )

    add("## Proxy emotion labels\n")
    add(
        "The corpus has no emotion labels. Each 4-bar phrase gets proxy valence and arousal "
        "(`livekomp/models/proxy.py`), from what music psychology links to each dimension:\n\n"
        "- **valence** = 0.5 × mode of the work (+1 major, −1 minor) + 0.3 × tanh(4 × (best "
        "major-key correlation − best minor-key correlation of the phrase's duration-weighted "
        "pitch classes)) + 0.2 × (share of major − share of minor/diminished chords under the "
        "phrase; the key-profile term again where no chords are known). Mode and harmonic colour: "
        "Hevner 1935; Gabrielsson & Lindström 2010.\n"
        "- **arousal** = tanh(1.2 × (0.6 z(onsets per quarter) + 0.25 z(mean absolute interval) + "
        "0.15 z(mean pitch))), z-scored against the training phrases. Density, leaps and register: "
        "Gabrielsson & Lindström 2010; Schubert 2004. The corpus has almost no tempo markings, so "
        "tempo is not part of it.\n"
    )
    if distribution:
        stats_row = metrics.get("proxy_stats", {})
        add(
            "Standardisation constants (training phrases): density "
            f"{stats_row.get('density_mean', 0):.2f} ± "
            f"{stats_row.get('density_std', 0):.2f} onsets per quarter, interval "
            f"{stats_row.get('interval_mean', 0):.2f} ± {stats_row.get('interval_std', 0):.2f} "
            f"semitones, register {stats_row.get('register_mean', 0):.1f} ± "
            f"{stats_row.get('register_std', 0):.1f}.\n"
        )
        edges = distribution["bin_edges"]
        bins = [f"{a:+.1f}…{b:+.1f}" for a, b in itertools.pairwise(edges)]
        add(f"Distribution over {distribution['phrases']:,} training phrases:\n")
        add(
            table(
                ["", *bins],
                [
                    ["valence", *distribution["valence_histogram"]],
                    ["arousal", *distribution["arousal_histogram"]],
                ],
            )
            + "\n"
        )
        q = distribution["quadrants"]
        v_mean, v_std = distribution["valence_mean_std"]
        a_mean, a_std = distribution["arousal_mean_std"]
        add(
            f"Valence {v_mean:+.2f} ± {v_std:.2f}, arousal {a_mean:+.2f} ± {a_std:.2f}, their "
            f"correlation {distribution['valence_arousal_correlation']:+.2f}. Quadrants: happy and "
            f"excited {pct(q['happy_excited'])}, happy and calm {pct(q['happy_calm'])}, sad and "
            f"calm {pct(q['sad_calm'])}, **sad and excited only {pct(q['sad_excited'])}** — the "
            "corpus has few fast minor-key phrases, so that corner of the pad is the models' "
            "weakest.\n"
        )
        rows = [
            [s, f"{v['phrases']:,}", f"{v['valence_mean']:+.2f}", f"{v['arousal_mean']:+.2f}"]
            for s, v in distribution["by_source"].items()
        ]
        add(table(["source", "phrases", "mean valence", "mean arousal"], rows) + "\n")
        add(
            "Limitation: density is counted per *notated* quarter, and collections notate "
            "differently (Palestrina in long values, the dance collections in short ones), so "
            "arousal partly tells the collections apart rather than how fast they are played.\n"
        )

    add("## Training\n")
    if melody:
        add(
            "`tools/train.py` (seed 1234, AdamW, 2 CPU threads). Melody: "
            f"{melody['train_windows']:,} "
            f"windows of 64 notes (stride 48), batch 64, lr 2e-3 with warm-up and cosine decay, "
            f"{melody['epochs']} epochs = {melody['steps']:,} steps in "
            f"{melody['train_minutes']:.1f} "
            f"min. Harmony: {harmony.get('train_half_bars', 0):,} half bars, "
            f"{harmony.get('train_minutes', 0):.1f} min (best of 60 epochs on valid). Groove: "
            f"{groove.get('train_bars', 0):,} bars, {groove.get('train_minutes', 0):.1f} min. "
            f"Wall clock in all, data preparation included: "
            f"{sum(m.get('wall_minutes', 0) for m in (melody, harmony, groove)):.1f} min. Training "
            "state is saved each epoch to `cache/train/` and `--resume` continues from it.\n"
        )

    if bench.get("training"):
        add(processes_section(bench["training"]))

    add("## Held-out results (test works)\n")
    if melody:
        ngram = melody["ngram_test"]
        test = melody["test"]
        rows = [
            [
                field,
                f"{test[field]['nll']:.3f}",
                pct(test[field]["accuracy"]),
                f"{ngram[field]['nll']:.3f}",
                pct(ngram[field]["accuracy"]),
            ]
            for field in ("position", "pitch", "duration")
        ]
        add("Melody, per note field (cross-entropy in nats, next-note accuracy):\n")
        add(table(["field", "model NLL", "model acc.", "trigram NLL", "trigram acc."], rows) + "\n")
        add(
            "The baseline is an interpolated trigram over each field's own history (uniform 0.05, "
            "unigram 0.15, bigram 0.3, trigram 0.5), fitted on the same training windows. The "
            "model predicts pitch given the true position and duration given both (teacher "
            "forcing, as it is trained); the trigram sees only its own field.\n"
        )
    if harmony:
        add(
            f"Harmony: chord accuracy {pct(harmony['test_accuracy'])} (NLL "
            f"{harmony['test_nll']:.3f}) against {pct(harmony['baseline_test_accuracy'])} for "
            f"the baseline ({harmony['baseline']}), over 36 classes.\n"
        )
    if groove:
        add(
            f"Groove: onset binary cross-entropy {groove['test']['onset_bce']:.4f} against "
            f"{groove['baseline_test']['onset_bce']:.4f}, accent squared error "
            f"{groove['test']['accent_mse']:.4f} against "
            f"{groove['baseline_test']['accent_mse']:.4f} "
            f"for the baseline ({groove['baseline']}).\n"
        )

    add("## Controllability and realism\n")
    if evaluation:
        grid = evaluation["grid"]
        add(
            f"`tools/evaluate.py`: valence {grid['valence']} × arousal {grid['arousal']}, "
            f"{evaluation['seeds']} seeds each (a different key per seed), phrases of "
            f"{evaluation['bars']} bars in {evaluation['beats_per_bar']}/4, composed inline as in "
            f"rehearsal; realism against {evaluation['reference_melodies']:,} held-out melodies"
            + (f" of `{evaluation['dataset']}`" if "dataset" in evaluation else "")
            + ".\n"
        )
        rows = []
        for label, key, fmt in (
            ("mode matches the sign of valence (all pitched notes)", "mode_accuracy", pct),
            ("… melody alone", "melody_mode_accuracy", pct),
            (
                "Spearman ρ, arousal ~ notes per bar (pitched parts)",
                "arousal_density_rho",
                "{:.3f}".format,
            ),
            (
                "Spearman ρ, arousal ~ melody notes per bar",
                "arousal_melody_density_rho",
                "{:.3f}".format,
            ),
            ("Spearman ρ, arousal ~ mean velocity", "arousal_velocity_rho", "{:.3f}".format),
            (
                "pitch-interval histogram, JS divergence to the corpus (bits)",
                "interval_js_bits",
                "{:.4f}".format,
            ),
            (
                "duration histogram, JS divergence to the corpus (bits)",
                "duration_js_bits",
                "{:.4f}".format,
            ),
            ("melody notes per bar", "melody_notes_per_bar", "{:.2f}".format),
        ):
            rows.append([label, fmt(evaluation["neural"][key]), fmt(evaluation["rules"][key])])
        add(table(["measure", "neural", "rules"], rows) + "\n")

        if "arrangement" in evaluation["neural"]:
            add(arrangement_section(evaluation))

    add("## Speed\n")
    tokens = bench.get("tokens")
    if tokens:
        add(
            f"`python -m tools.bench tokens`: {tokens['new']} notes written after "
            f"{tokens['context']} notes of context, one CPU thread, best of "
            f"{tokens['repeats']}, all in one process:\n"
        )
        rows = [
            [name, f"{v['ms_per_token']:.3f}", f"{v['speedup_vs_naive']:.2f}×"]
            for name, v in tokens.items()
            if isinstance(v, dict)
        ]
        add(table(["path", "ms per note", "vs naive torch"], rows) + "\n")
    bar = bench.get("bar")
    if bar:
        add(
            f"`python -m tools.bench bar`: one bar from all three models, {bar['bars']} bars "
            "sweeping the plane, one CPU thread:\n"
        )
        rows = [
            [name, *(f"{v[k]:.2f}" for k in ("p50_ms", "p99_ms", "max_ms")), v["notes_per_bar"]]
            for name, v in bar.items()
            if isinstance(v, dict)
        ]
        add(table(["runtime", "p50 ms", "p99 ms", "max ms", "notes per bar"], rows) + "\n")
    sweep = bench.get("sweep")
    if sweep:
        composer = sweep["composer"]
        add(
            f"`python -m tools.bench sweep`: {sweep['minutes']:g} minutes live at "
            f"{sweep['bpm']:g} BPM into JACK, the XY pad sweeping the plane "
            f"({sweep['xy_messages']:,} OSC messages): "
            f"{sweep['bars_played']} bars, outcomes {composer['outcomes']}, fresh latency "
            f"{composer.get('fresh_latency')}, bars without a note: "
            f"{sweep['bars_without_notes']}.\n"
        )
        add(
            "The live fresh latency is measured inside the server, where the composer's thread "
            "shares the GIL with trio, the voice and the buffer's refills; the one-core cost of a "
            "bar is the `bar` figure above. The live budget is 60 ms (`--budget-ms`).\n"
        )
    add("## Reproduce\n")
    add(
        "```sh\n"
        ".venv/bin/pip install -q -c constraints.txt -e '.[train,onnx]'\n"
        ".venv/bin/python tools/build_dataset.py\n"
        ".venv/bin/python tools/train.py\n"
        ".venv/bin/python tools/evaluate.py\n"
        ".venv/bin/python tools/quadrant_demos.py\n"
        ".venv/bin/python -m tools.bench tokens --json /tmp/tokens.json\n"
        ".venv/bin/python -m tools.bench bar --json /tmp/bar.json\n"
        ".venv/bin/python -m tools.bench sweep --json /tmp/sweep.json   # needs a JACK server\n"
        ".venv/bin/python -m tools.bench training --models harmony,groove,melody \\\n"
        "    --runs 1,1x1,2 --train-args '--melody-epochs 1' --json /tmp/training.json\n"
        ".venv/bin/python tools/model_card.py \\\n"
        "    --bench /tmp/tokens.json /tmp/bar.json /tmp/sweep.json /tmp/training.json\n"
        "```\n"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bench", nargs="*", type=Path, default=[], help="bench JSON files to fold in"
    )
    args = parser.parse_args(argv)
    if args.bench:
        bench_path = CHECKPOINTS / "bench.json"
        bench = load(bench_path)
        for path in args.bench:
            result = json.loads(path.read_text())
            kind = next((k for key, k in BENCH_KINDS if key in result), "bar")
            bench[kind] = result
        bench_path.write_text(json.dumps(bench, indent=2) + "\n")
    (CHECKPOINTS / "MODEL_CARD.md").write_text(render())
    print(f"wrote {CHECKPOINTS / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
