"""Fine-tuning a style adapter on a performer's own MIDI (`livekomp finetune`).

The folder's files become work records (`midi_import`), labelled by their sidecar moods or else
by the very proxy labeller the base models learned from (with the base's statistics), and shaped
by the same `data` functions, so the adapter sees inputs exactly as the base did. Whole files are
held out (about 15 %, chosen by a hash of their path, never all of them); a single file is split
at a bar instead. LoRA adapters train with peft on the melody model's attention projections and
the groove predictor's linear layers; the base weights never change. After each epoch the
held-out loss is measured and the best epoch's adapter is the one saved, so a small folder cannot
overfit past its best. The card records the held-out loss of the base and of the adapted model.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from livekomp import __version__
from livekomp.models import checkpoint, data, lora, midi_import, proxy
from livekomp.models.runtime import pick_device
from livekomp.models.scores import batches, groove_loss, groove_scores, melody_scores

TARGETS = {"melody": ("melody",), "groove": ("groove",), "both": ("melody", "groove")}
MIN_HELD_OUT_BARS = 4
# With no --epochs, each model trains for about this many optimizer steps, within EPOCH_RANGE
# epochs: a folder of a dozen songs makes one batch an epoch, a large one dozens. The best epoch on
# the held-out files is the one kept, so the upper end cannot overfit past it.
MIN_STEPS = 300
EPOCH_RANGE = (8, 60)


class FinetuneError(Exception):
    """Fine-tuning cannot start or finish; the message says why and what to do."""


@dataclass(frozen=True)
class FinetuneOptions:
    midi: Path
    name: str
    target: str = "both"  # melody | groove | both
    rank: int = 8
    alpha: float = 16.0
    epochs: int | None = None  # None: enough for about MIN_STEPS optimizer steps (see below)
    device: str = "cpu"
    track: str | None = None  # the melody's track (name or index); None: the busiest
    seed: int = 0
    batch: int = 32
    learning_rate: float = 2e-3
    dropout: float = 0.05
    holdout: float = 0.15
    force: bool = False  # replace an adapter of the same name


def _split_at_bar(record: dict, bar: int) -> tuple[dict, dict]:
    """One work cut in two at a bar line; the second half's bars count from 0."""
    first = {**record, "id": f"{record['id']}[:{bar}]", "bar_ticks": record["bar_ticks"][:bar]}
    first["notes"] = [n for n in record["notes"] if n[0] < bar]
    second = {**record, "id": f"{record['id']}[{bar}:]", "bar_ticks": record["bar_ticks"][bar:]}
    second["notes"] = [[n[0] - bar, *n[1:]] for n in record["notes"] if n[0] >= bar]
    return first, second


def split_records(records: list[dict], share: float) -> tuple[list[dict], list[dict]]:
    """(train, held out): whole files by a hash of their id; a lone file is cut at a bar."""
    if len(records) == 1:
        record = records[0]
        bars = len(record["bar_ticks"])
        held_bars = max(MIN_HELD_OUT_BARS, round(bars * share))
        if bars < 2 * held_bars:
            raise FinetuneError(
                f"one file of {bars} bars is too short to hold any out; give at least "
                f"{2 * held_bars} bars, or more files"
            )
        train, held = _split_at_bar(record, bars - held_bars)
        return [train], [held]
    ordered = sorted(records, key=lambda r: (zlib.crc32(r["id"].encode()), r["id"]))
    held_count = min(len(records) - 1, max(1, round(len(records) * share)))
    held_ids = {r["id"] for r in ordered[:held_count]}
    return (
        [r for r in records if r["id"] not in held_ids],
        [r for r in records if r["id"] in held_ids],
    )


def _examples(kind: str, records: list[dict], stats: proxy.ProxyStats, context: int):
    if kind == "melody":
        # Overlapping windows (a quarter context apart): a performer's folder is small.
        return data.melody_examples(records, stats, context, stride=max(1, context // 4))
    return data.groove_examples(records, stats)


def _held_out_score(kind: str, model: torch.nn.Module, examples) -> dict[str, Any]:
    """The held-out loss (what training minimises) and its parts."""
    if kind == "melody":
        fields = melody_scores(model, examples)
        return {"loss": sum(f["nll"] for f in fields.values()), "fields": fields}
    scores = groove_scores(model, examples)
    return {"loss": scores["onset_bce"] + 0.5 * scores["accent_mse"], **scores}


def _batch_loss(kind: str, model: torch.nn.Module, examples, index: torch.Tensor) -> torch.Tensor:
    if kind == "melody":
        loss, _ = model(examples.steps[index], examples.mood[index], examples.metre[index])
        return loss
    bce, mse = groove_loss(model, examples, index)
    return bce + 0.5 * mse


def _to(examples, device: str):
    """The examples' tensors on `device` (they are small: a folder of songs)."""
    moved = {name: value.to(device) for name, value in vars(examples).items()}
    return type(examples)(**moved)


def _train_one(
    kind: str,
    base: torch.nn.Module,
    train,
    held,
    options: FinetuneOptions,
    device: str,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """Train one adapter; returns the peft model (best epoch's adapter) and what was measured."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm import tqdm

    torch.manual_seed(options.seed)
    peft_model = lora.attach(base, kind, options.rank, options.alpha, options.dropout).to(device)
    model = lora.inner(peft_model)
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate, weight_decay=0.0)
    per_epoch = math.ceil(len(train) / options.batch)
    epochs = options.epochs or min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], -(-MIN_STEPS // per_epoch)))
    total = per_epoch * epochs
    warmup = max(1, min(20, total // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return options.learning_rate * (step + 1) / warmup
        progress_share = (step - warmup) / max(1, total - warmup)
        return options.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_share)))

    base_score = _held_out_score(kind, base, held)
    best = {"epoch": 0, "score": base_score, "state": None}
    generator = torch.Generator().manual_seed(options.seed)
    history = []
    started = time.perf_counter()
    step = 0
    # disable=None: a bar on a terminal, none in a log file.
    bar = tqdm(
        total=total, desc=f"{options.name}: {kind}", unit="step", disable=None if progress else True
    )
    peft_model.train()
    for epoch in range(1, epochs + 1):
        for index in batches(len(train), options.batch, generator):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = _batch_loss(kind, model, train, index.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        score = _held_out_score(kind, model, held)
        history.append({"epoch": epoch, "held_out_loss": round(score["loss"], 5)})
        bar.set_postfix(held_out=f"{score['loss']:.3f}", base=f"{base_score['loss']:.3f}")
        if score["loss"] < best["score"]["loss"]:
            state = get_peft_model_state_dict(peft_model)
            best = {
                "epoch": epoch,
                "score": score,
                "state": {k: v.clone() for k, v in state.items()},
            }
    bar.close()
    seconds = time.perf_counter() - started
    if best["state"] is not None:
        set_peft_model_state_dict(peft_model, best["state"])
    peft_model.eval()
    notes = int((train.steps[:, 1:, 0] >= 0).sum()) if kind == "melody" else None
    return peft_model, {
        "examples": {"train": len(train), "held_out": len(held)},
        "epochs": epochs,
        "steps": step,
        "batch": options.batch,
        "learning_rate": options.learning_rate,
        "seconds": round(seconds, 2),
        "train_notes_seen": notes * epochs if notes is not None else None,
        "trainable_parameters": lora.trainable_parameters(peft_model),
        "best_epoch": best["epoch"],
        "held_out": {"base": base_score, "adapted": best["score"]},
        "history": history,
    }


def _describe_data(
    options: FinetuneOptions, train: list[dict], held: list[dict], skipped: list[str]
) -> dict[str, Any]:
    records = train + held
    return {
        "folder": str(options.midi),
        "track": options.track,
        "files_used": sorted({r["work"] for r in records}),
        "files_skipped": skipped,
        "train": [r["id"] for r in train],
        "held_out": [r["id"] for r in held],
        "notes": sum(len(r["notes"]) for r in records),
        "bars": sum(len(r["bar_ticks"]) for r in records),
        "labels": {
            "sidecar": sum(1 for r in records if "mood" in r),
            "proxy": sum(1 for r in records if "mood" not in r),
        },
    }


def finetune(
    options: FinetuneOptions,
    adapters_dir: Path,
    checkpoints_dir: Path = checkpoint.DEFAULT_DIR,
    *,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> lora.StyleInfo:
    """Fine-tune, save `adapters_dir/NAME/`, and return its description."""
    lora.check_name(options.name)
    if options.target not in TARGETS:
        raise FinetuneError(f"--target must be one of {', '.join(TARGETS)}")
    if (
        options.rank < 1
        or options.alpha <= 0
        or (options.epochs is not None and options.epochs < 1)
    ):
        raise FinetuneError("--rank and --epochs must be at least 1, --alpha above 0")
    destination = adapters_dir / options.name
    if destination.exists() and not options.force:
        raise FinetuneError(f"{destination} exists; pass --force to replace it")
    device = pick_device(options.device)
    records, skipped = midi_import.read_midi_folder(options.midi, track=options.track)
    for line in skipped:
        say(f"skipped {line}")
    if not records:
        raise midi_import.no_records_error(options.midi, skipped)
    melody_description = checkpoint.read_description("melody", checkpoints_dir)
    stats = proxy.ProxyStats(**melody_description["proxy_stats"])
    train_records, held_records = split_records(records, options.holdout)
    say(
        f"{len(records)} file(s), {sum(len(r['notes']) for r in records)} melody notes; "
        f"{len(held_records)} held out"
    )
    folder = adapters_dir / f".{options.name}.partial"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        description = _train_and_save(
            options,
            checkpoints_dir,
            stats,
            train_records,
            held_records,
            folder,
            device,
            progress,
            say,
        )
        description["data"] = _describe_data(options, train_records, held_records, skipped)
        (folder / lora.STYLE_FILE).write_text(json.dumps(description, indent=2) + "\n")
        (folder / lora.CARD_FILE).write_text(card(description))
        if destination.exists():
            shutil.rmtree(destination)
        folder.replace(destination)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return lora.read_style(options.name, adapters_dir)


def _train_and_save(
    options: FinetuneOptions,
    checkpoints_dir: Path,
    stats: proxy.ProxyStats,
    train_records: list[dict],
    held_records: list[dict],
    folder: Path,
    device: str,
    progress: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Train each target's adapter into `folder`; returns the description for style.json.

    With --target both, a model the folder gives no examples for (a groove needs bars on the
    sixteenth grid; triplet-only music has none) is left out with a line, and the other trains.
    """
    description: dict[str, Any] = {
        "format": lora.FORMAT,
        "name": options.name,
        "targets": [],
        "rank": options.rank,
        "alpha": options.alpha,
        "dropout": options.dropout,
        "seed": options.seed,
        "base": {},
        "files": {},
        "bytes": {},
        "training": {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "livekomp": __version__,
    }
    for kind in TARGETS[options.target]:
        base = checkpoint.load(kind, checkpoints_dir, device)
        context = base.config.context if kind == "melody" else 0
        train = _examples(kind, train_records, stats, context)
        held = _examples(kind, held_records, stats, context)
        if not len(train) or not len(held):
            problem = (
                f"too little music for the {kind} adapter: {len(train)} training and "
                f"{len(held)} held-out examples"
            )
            if len(TARGETS[options.target]) == 1:
                raise FinetuneError(f"{problem}; add songs")
            say(f"{problem}; the {kind} model stays as it is")
            continue
        peft_model, measured = _train_one(
            kind, base, _to(train, device), _to(held, device), options, device, progress
        )
        if measured["best_epoch"] == 0:
            say(
                f"no epoch predicted the held-out songs better than the base {kind} model; its "
                "adapter is saved at zero and plays as the base does"
            )
        peft_model.cpu()
        description["base"][kind] = checkpoint.read_description(kind, checkpoints_dir)["sha256"]
        description["files"][kind] = lora.save_adapter(peft_model, folder / kind)
        description["bytes"][kind] = (folder / kind / lora.WEIGHTS_FILE).stat().st_size
        description["training"][kind] = measured
        description["targets"].append(kind)
    if not description["targets"]:
        raise FinetuneError("too little music to adapt any model; add songs")
    return description


def card(description: dict[str, Any]) -> str:
    """CARD.md: the adapter's facts for people."""
    lines = [
        f"# Style adapter `{description['name']}`",
        "",
        f"LoRA rank {description['rank']}, alpha {description['alpha']:g}, on "
        f"{' and '.join(description['targets'])}; made {description['created']} by livekomp "
        f"{description['livekomp']}.",
        "",
    ]
    data_facts = description.get("data")
    if data_facts:
        lines += [
            "## Data",
            "",
            f"- Folder: `{data_facts['folder']}`; {len(data_facts['files_used'])} file(s) used, "
            f"{len(data_facts['files_skipped'])} skipped; {data_facts['notes']} melody notes in "
            f"{data_facts['bars']} bars.",
            f"- Labels: {data_facts['labels']['sidecar']} from sidecar files, "
            f"{data_facts['labels']['proxy']} from the base models' proxy labeller.",
            f"- Held out: {', '.join(data_facts['held_out'])}.",
            *(f"- Skipped: {line}" for line in data_facts["files_skipped"]),
            "",
        ]
    lines += [
        "## Training and held-out loss",
        "",
        "| model | trainable parameters | steps | seconds | best epoch | base | adapted |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, facts in description["training"].items():
        held = facts["held_out"]
        lines.append(
            f"| {kind} | {facts['trainable_parameters']:,} | {facts['steps']} | "
            f"{facts['seconds']:.1f} | {facts['best_epoch']} | {held['base']['loss']:.4f} | "
            f"{held['adapted']['loss']:.4f} |"
        )
    lines += [
        "",
        "Loss: the melody's is the negative log-likelihood per note (nats), summed over its "
        "position, pitch and duration; the groove's is onset cross-entropy + 0.5 × accent squared "
        "error. The adapter saved is the best epoch's on the held-out files, so the adapted "
        "figure is also what chose it.",
        "",
        "Base weights (SHA-256): "
        + ", ".join(f"{kind} `{sha[:16]}`" for kind, sha in description["base"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)
