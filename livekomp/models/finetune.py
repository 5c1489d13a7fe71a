"""Fine-tuning a style adapter on a performer's own MIDI (`livekomp finetune`).

The folder's files become work records (`midi_import`), labelled by their sidecar moods or else
by the very proxy labeller the base models learned from (with the base's statistics), and shaped
by the same `data` functions, so the adapter sees inputs exactly as the base did. Whole files are
held out (about 15 %, chosen by a hash of their path, never all of them); a single file is split
at a bar instead. LoRA adapters train with peft on the melody model's attention projections and
the groove predictor's linear layers; the base weights never change. After each epoch the
held-out loss is measured and the best epoch's adapter is the one saved, so a small folder cannot
overfit past its best. The card records the held-out loss of the base and of the adapted model.

A few tunes can teach a model to say a few things over and over, so training is pulled toward the
base: the loss adds KL(base ‖ styled) on the training contexts, weighted as if the base's own
predictions were `base_prior_notes` more notes of the folder (`kl_weight`). A small folder (below
SMALL_FILES files or SMALL_NOTES melody notes) is named in a warning — on the log, in style.json
and on the card — and trains fewer passes (`default_epochs`).
"""

from __future__ import annotations

import json
import logging
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
import torch.nn.functional as F

from livekomp import __version__
from livekomp.models import checkpoint, data, lora, midi_import, proxy
from livekomp.models.groove import step_mask
from livekomp.models.runtime import pick_device
from livekomp.models.scores import (
    batches,
    groove_loss,
    groove_scores,
    melody_logits,
    melody_scores,
)

log = logging.getLogger("livekomp.finetune")

TARGETS = {"melody": ("melody",), "groove": ("groove",), "both": ("melody", "groove")}
MIN_HELD_OUT_BARS = 4
# A folder is small below either figure, and fine-tuning says so (log, style.json, CARD.md): below
# SMALL_FILES the held-out share (15 %) rounds to one file, so early stopping rests on a single
# tune; below SMALL_NOTES melody notes (about eight 16-bar tunes in eighths) the pull toward the
# base (below) weighs more than 0.3 a note, so it holds the style back noticeably, and a folder
# that small is where styles collapsed before there was a pull.
SMALL_FILES = 10
SMALL_NOTES = 1000
# With no --epochs, a model trains FULL_EPOCHS passes over its training examples, but no more than
# make about FULL_STEPS optimizer steps (a large folder makes many batches an epoch); a small
# folder trains SMALL_EPOCHS passes. Measured on three files of tools/style_corpus with the pull
# (below), six seeds each: 40 passes reach the held-out loss of 60 (1.98–2.01 nats either way),
# the best epoch falling at 31–39; 15–30 passes left the style too weak for tools/style_check.
# So a small folder trains a third fewer steps for the same style. See `default_epochs`.
FULL_EPOCHS = 60
SMALL_EPOCHS = 40
FULL_STEPS = 300
# The pull toward the base: the base models count as this many notes of evidence, so the loss
# per note adds KL(base ‖ styled) × BASE_PRIOR_NOTES / (the folder's training notes). Three
# files of 128 notes (two to train on) get a weight of about 1, a folder of 100 songs a weight
# of 0.02. See `_melody_loss` and `kl_weight`.
BASE_PRIOR_NOTES = 250


class FinetuneError(Exception):
    """Fine-tuning cannot start or finish; the message says why and what to do."""


@dataclass(frozen=True)
class FinetuneOptions:
    midi: Path
    name: str
    target: str = "both"  # melody | groove | both
    rank: int = 8
    alpha: float = 16.0
    epochs: int | None = None  # None: `default_epochs`
    device: str = "cpu"
    track: str | None = None  # the melody's track (name or index); None: the busiest
    seed: int = 0
    batch: int = 32
    learning_rate: float = 2e-3
    dropout: float = 0.05
    holdout: float = 0.15
    force: bool = False  # replace an adapter of the same name
    base_prior_notes: float = BASE_PRIOR_NOTES  # the pull toward the base; 0: none


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


def categorical_kl(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean KL(base ‖ styled) over rows of categorical logits (N, V), in nats."""
    return F.kl_div(
        F.log_softmax(logits, -1),
        F.log_softmax(base_logits, -1),
        log_target=True,
        reduction="batchmean",
    )


def _melody_loss(
    model: torch.nn.Module, base: torch.nn.Module, examples, index: torch.Tensor, weight: float
) -> torch.Tensor:
    """The folder's negative log-likelihood per note, summed over the three fields, plus
    `weight` × KL(base ‖ styled) of each field's distribution on the same contexts.

    KL in that direction is the cross-entropy of the styled model against the base's own
    predictions, so the loss is the cross-entropy against a mixture target: the folder's note
    with weight 1, the base's distribution with weight `weight`. Its optimum keeps a share
    weight / (1 + weight) of the base's probability on everything the base would play, so a few
    tunes cannot squeeze the model onto their few pitches; where the folder and the base agree
    it costs nothing.
    """
    steps, mood, metre = examples.steps[index], examples.mood[index], examples.metre[index]
    logits, targets = melody_logits(model, steps, mood, metre)  # (B, T, V) each; (B, T, 3)
    valid = targets[..., 0] >= 0  # (B, T): a note to predict, not padding
    loss = sum(
        F.cross_entropy(field[valid], targets[..., i][valid]) for i, field in enumerate(logits)
    )
    if weight:
        with torch.no_grad():
            base_logits, _ = melody_logits(base, steps, mood, metre)
        loss = loss + weight * sum(
            categorical_kl(b[valid], field[valid])
            for b, field in zip(base_logits, logits, strict=True)
        )
    return loss


def _groove_loss(
    model: torch.nn.Module, base: torch.nn.Module, examples, index: torch.Tensor, weight: float
) -> torch.Tensor:
    """Onset cross-entropy + 0.5 × accent squared error, plus `weight` × the same pull to the
    base as the melody's: KL(base ‖ styled) of each step's onset (a Bernoulli), and the accent's
    squared distance to the base's (a unit Gaussian's KL, so also × 0.5) where the base expects
    a note."""
    bce, mse = groove_loss(model, examples, index)
    loss = bce + 0.5 * mse
    if not weight:
        return loss
    inputs = (examples.mood[index], examples.metre[index], examples.previous[index])
    onset_logits, accents = model(*inputs)  # (B, STEPS) each
    with torch.no_grad():
        base_logits, base_accents = base(*inputs)
        onset_base = torch.sigmoid(base_logits)
    inside = step_mask(examples.bar_steps[index])  # (B, STEPS)

    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, onset_base, reduction="none")

    onset_kl = (cross_entropy(onset_logits) - cross_entropy(base_logits))[inside].mean()
    expected = onset_base * inside
    accent_gap = (expected * (accents - base_accents) ** 2).sum() / expected.sum().clamp_min(1e-6)
    return loss + weight * (onset_kl + 0.5 * accent_gap)


def _batch_loss(
    kind: str,
    model: torch.nn.Module,
    base: torch.nn.Module,
    examples,
    index: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    if kind == "melody":
        return _melody_loss(model, base, examples, index, weight)
    return _groove_loss(model, base, examples, index, weight)


def default_epochs(small: bool, batches_per_epoch: int) -> int:
    """Epochs with no --epochs: FULL_EPOCHS passes (SMALL_EPOCHS for a small folder), but no
    more than make about FULL_STEPS optimizer steps."""
    passes = SMALL_EPOCHS if small else FULL_EPOCHS
    return max(1, min(passes, -(-FULL_STEPS // batches_per_epoch)))


def kl_weight(base_prior_notes: float, train_notes: int) -> float:
    """The weight of KL(base ‖ styled) per note: the base's pseudo-notes over the folder's.

    Maximising the folder's likelihood under a prior that counts the base's predictions as
    `base_prior_notes` observed notes gives, per training note, the negative log-likelihood plus
    KL(base ‖ styled) × base_prior_notes / train_notes: the fewer notes the folder has, the more
    the base's say; a large folder barely feels it.
    """
    return base_prior_notes / max(1, train_notes)


@dataclass(frozen=True)
class Plan:
    """What the folder's size decides: the warning, the epochs, the pull toward the base."""

    files: int
    notes: int
    bars: int
    train_notes: int
    options: FinetuneOptions

    @property
    def small(self) -> bool:
        return self.files < SMALL_FILES or self.notes < SMALL_NOTES

    @property
    def kl_weight(self) -> float:
        return kl_weight(self.options.base_prior_notes, self.train_notes)

    def epochs(self, batches_per_epoch: int) -> int:
        return self.options.epochs or default_epochs(self.small, batches_per_epoch)

    def warning(self) -> str | None:
        """For a small folder: its size against both thresholds, and what training does about
        it; None for a folder of a fair size."""
        if not self.small:
            return None
        if self.options.epochs:
            length = f"--epochs {self.options.epochs} as given"
        else:
            length = f"{SMALL_EPOCHS} passes instead of {FULL_EPOCHS}"
        if self.options.base_prior_notes:
            pull = (
                f"held to the base models as if their predictions were "
                f"{self.options.base_prior_notes:g} more notes (KL weight {self.kl_weight:.2f})"
            )
        else:
            pull = "NOT held to the base models (--base-prior 0)"
        return (
            f"small folder: {self.files} file(s), {self.notes} melody notes in {self.bars} bars, "
            f"where a style needs at least {SMALL_FILES} files and {SMALL_NOTES:,} melody notes; "
            f"training {length}, {pull}; add music for a stronger, safer style"
        )


def plan(options: FinetuneOptions, train: list[dict], held: list[dict]) -> Plan:
    records = train + held
    return Plan(
        files=len({r["work"] for r in records}),
        notes=sum(len(r["notes"]) for r in records),
        bars=sum(len(r["bar_ticks"]) for r in records),
        train_notes=sum(len(r["notes"]) for r in train),
        options=options,
    )


def _to(examples, device: str):
    """The examples' tensors on `device` (they are small: a folder of songs)."""
    moved = {name: value.to(device) for name, value in vars(examples).items()}
    return type(examples)(**moved)


def _train_one(
    kind: str,
    base: torch.nn.Module,
    train,
    held,
    folder_plan: Plan,
    device: str,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """Train one adapter; returns the peft model (best epoch's adapter) and what was measured."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm import tqdm

    options = folder_plan.options
    torch.manual_seed(options.seed)
    peft_model = lora.attach(base, kind, options.rank, options.alpha, options.dropout).to(device)
    model = lora.inner(peft_model)
    base = base.to(device).eval()
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate, weight_decay=0.0)
    per_epoch = math.ceil(len(train) / options.batch)
    epochs = folder_plan.epochs(per_epoch)
    weight = folder_plan.kl_weight
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
            loss = _batch_loss(kind, model, base, train, index.to(device), weight)
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
        "epochs_chosen_by": "--epochs" if options.epochs else "default_epochs",
        "steps": step,
        "batch": options.batch,
        "learning_rate": options.learning_rate,
        "base_prior_notes": options.base_prior_notes,
        "kl_weight": round(weight, 5),
        "seconds": round(seconds, 2),
        "train_notes_seen": notes * epochs if notes is not None else None,
        "trainable_parameters": lora.trainable_parameters(peft_model),
        "best_epoch": best["epoch"],
        "held_out": {"base": base_score, "adapted": best["score"]},
        "history": history,
    }


def _describe_data(
    folder_plan: Plan, train: list[dict], held: list[dict], skipped: list[str]
) -> dict[str, Any]:
    records = train + held
    return {
        "folder": str(folder_plan.options.midi),
        "track": folder_plan.options.track,
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
        "small_folder": folder_plan.warning(),
        "small_below": {"files": SMALL_FILES, "notes": SMALL_NOTES},
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
    if not math.isfinite(options.base_prior_notes) or options.base_prior_notes < 0:
        raise FinetuneError(f"--base-prior must be 0 or more, got {options.base_prior_notes:g}")
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
    folder_plan = plan(options, train_records, held_records)
    warning = folder_plan.warning()
    if warning:
        log.warning("%s", warning)
    folder = adapters_dir / f".{options.name}.partial"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        description = _train_and_save(
            folder_plan,
            checkpoints_dir,
            stats,
            train_records,
            held_records,
            folder,
            device,
            progress,
            say,
        )
        description["data"] = _describe_data(folder_plan, train_records, held_records, skipped)
        (folder / lora.STYLE_FILE).write_text(json.dumps(description, indent=2) + "\n")
        (folder / lora.CARD_FILE).write_text(card(description))
        if destination.exists():
            shutil.rmtree(destination)
        folder.replace(destination)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return lora.read_style(options.name, adapters_dir)


def _train_and_save(
    folder_plan: Plan,
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
    options = folder_plan.options
    description: dict[str, Any] = {
        "format": lora.FORMAT,
        "name": options.name,
        "targets": [],
        "rank": options.rank,
        "alpha": options.alpha,
        "dropout": options.dropout,
        "seed": options.seed,
        "base_prior_notes": options.base_prior_notes,
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
            kind, base, _to(train, device), _to(held, device), folder_plan, device, progress
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
    if data_facts and data_facts.get("small_folder"):
        lines += ["## Warning: a small folder", "", data_facts["small_folder"] + ".", ""]
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
        "| model | trainable parameters | epochs | steps | KL weight | seconds | best epoch | "
        "base | adapted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, facts in description["training"].items():
        held = facts["held_out"]
        lines.append(
            f"| {kind} | {facts['trainable_parameters']:,} | {facts['epochs']} | "
            f"{facts['steps']} | {facts.get('kl_weight', 0):.3f} | {facts['seconds']:.1f} | "
            f"{facts['best_epoch']} | {held['base']['loss']:.4f} | {held['adapted']['loss']:.4f} |"
        )
    lines += [
        "",
        "Loss: the melody's is the negative log-likelihood per note (nats), summed over its "
        "position, pitch and duration; the groove's is onset cross-entropy + 0.5 × accent squared "
        "error. Training adds KL(base ‖ styled) on the training contexts, times the weight shown "
        f"(the base counted as {description.get('base_prior_notes', 0):g} notes of evidence, over "
        "the folder's "
        "training notes), so the style keeps the base's range where the folder says little. "
        "The adapter saved "
        "is the best epoch's on the held-out files (by the loss above, without the KL term), so "
        "the adapted figure is also what chose it.",
        "",
        "Base weights (SHA-256): "
        + ", ".join(f"{kind} `{sha[:16]}`" for kind, sha in description["base"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)
