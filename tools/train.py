"""Train livekomp's three models on the cached corpus and write `checkpoints/`.

    python tools/build_dataset.py                # once: parse the music21 corpus (cache/dataset)
    python tools/train.py [--models melody,harmony,groove] [--melody-minutes 30] [--resume]
    torchrun --standalone --nproc_per_node=2 tools/train.py [...]   # the same, on 2 processes

Under torchrun each process trains on its share of every batch, with its gradients averaged by
DistributedDataParallel (gloo on CPU, NCCL with one GPU per process): the batch sizes are global,
so a step sees the same samples as one process does (`tools/distributed.py`). Rank 0 alone
evaluates and writes; the checkpoints are the same files either way.

Everything is seeded. Training state is saved to `cache/train/KIND.pt` at the end of each
epoch, so `--resume` carries on after an interruption. Each model is evaluated on
the held-out works (valid during training, test at the end) against a simple baseline, and the
figures go into the checkpoint's JSON and `checkpoints/metrics.json` for the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekomp.models import checkpoint, data, tokens  # noqa: E402
from livekomp.models.groove import GrooveConfig, GroovePredictor, step_mask  # noqa: E402
from livekomp.models.harmony import CHORD_CLASSES, HarmonyConfig, HarmonyPredictor  # noqa: E402
from livekomp.models.melody import FIELDS, MelodyConfig, MelodyTransformer  # noqa: E402
from livekomp.models.scores import (  # noqa: E402
    batches,
    groove_loss,
    groove_scores,
    melody_scores,
)
from tools.distributed import Objective, Ranks, open_ranks, threads_per_process  # noqa: E402

SEED = 1234
CONFIGS = {"melody": MelodyConfig, "harmony": HarmonyConfig, "groove": GrooveConfig}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def model_config(args, kind: str):
    """The kind's config: its defaults, with the fields that `--config KIND=JSON` gave."""
    return CONFIGS[kind](**args.config.get(kind, {}))


def config_override(text: str) -> tuple[str, dict]:
    """`KIND=JSON` from the command line, checked against the kind's config fields."""
    kind, _, raw = text.partition("=")
    if kind not in CONFIGS:
        raise argparse.ArgumentTypeError(f"{kind!r}: not one of {', '.join(CONFIGS)}")
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{kind}: not JSON: {error}") from None
    known = {f.name for f in dataclasses.fields(CONFIGS[kind])}
    if not isinstance(fields, dict) or set(fields) - known:
        raise argparse.ArgumentTypeError(f"{kind}: fields must be among {', '.join(sorted(known))}")
    return kind, fields


def on(device: torch.device, examples):
    """The same examples with every tensor on `device` (themselves on the CPU)."""
    if device.type == "cpu":
        return examples
    moved = {f.name: getattr(examples, f.name).to(device) for f in dataclasses.fields(examples)}
    return dataclasses.replace(examples, **moved)


class Resumable:
    """Saves and restores a training run's state under cache/train."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.path = directory / f"{kind}.pt"
        directory.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, weights_only=False)

    def save(self, state: dict) -> None:
        temporary = self.path.with_suffix(".tmp")
        torch.save(state, temporary)
        temporary.replace(self.path)


# ---------------------------------------------------------------- melody


class FieldNgram:
    """Interpolated trigram over one field's own history (the melody baseline)."""

    WEIGHTS = (0.05, 0.15, 0.3, 0.5)  # uniform, unigram, bigram, trigram

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab
        self.counts: list[defaultdict] = [defaultdict(Counter) for _ in range(3)]

    def fit(self, sequences: list[list[int]]) -> FieldNgram:
        for seq in sequences:
            for i, token in enumerate(seq):
                for order in range(3):
                    if i >= order:
                        self.counts[order][tuple(seq[i - order : i])][token] += 1
        return self

    def probability(self, history: tuple[int, ...], token: int) -> float:
        p = self.WEIGHTS[0] / self.vocab
        for order in range(3):
            if len(history) < order:
                continue
            context = history[len(history) - order :] if order else ()
            counter = self.counts[order].get(context)
            if counter:
                p += self.WEIGHTS[order + 1] * counter[token] / sum(counter.values())
            else:
                p += self.WEIGHTS[order + 1] / self.vocab
        return p

    def predict(self, history: tuple[int, ...]) -> int:
        for order in (2, 1, 0):
            if len(history) >= order:
                counter = self.counts[order].get(history[len(history) - order :] if order else ())
                if counter:
                    return counter.most_common(1)[0][0]
        return 0


def field_sequences(examples: data.MelodyExamples, field: int) -> list[list[int]]:
    rows = examples.steps[:, :, field].tolist()
    return [[t for t in row if t >= 0] for row in rows]


def ngram_baseline(train: data.MelodyExamples, test: data.MelodyExamples) -> dict:
    results = {}
    vocabs = (tokens.POSITION_VOCAB, tokens.PITCH_VOCAB, tokens.DURATION_VOCAB)
    for field, (name, vocab) in enumerate(zip(FIELDS, vocabs, strict=True)):
        model = FieldNgram(vocab).fit(field_sequences(train, field))
        nll, correct, count = 0.0, 0, 0
        for seq in field_sequences(test, field):
            for i in range(1, len(seq)):
                history = tuple(seq[max(0, i - 2) : i])
                nll -= math.log(model.probability(history, seq[i]))
                correct += model.predict(history) == seq[i]
                count += 1
        results[name] = {"nll": nll / count, "accuracy": correct / count}
    return results


def train_melody(args, splits, stats, out: Path, state_dir: Path, ranks: Ranks) -> dict | None:
    config = model_config(args, "melody")
    say = print if ranks.main else lambda *_, **__: None
    say("melody: building windows …", flush=True)
    train = data.melody_examples(splits["train"], stats, config.context)
    valid = data.melody_examples(splits["valid"], stats, config.context, stride=config.context)
    test = data.melody_examples(splits["test"], stats, config.context, stride=config.context)
    say(f"melody: {len(train)} train, {len(valid)} valid, {len(test)} test windows", flush=True)
    model = MelodyTransformer(config).to(ranks.device)
    objective = ranks.wrap(model)  # the model's forward is its training loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.melody_lr, weight_decay=0.05)
    saver = Resumable("melody", state_dir)
    generator = torch.Generator().manual_seed(args.seed)
    epoch, step, seconds, history, seen = 0, 0, 0.0, [], 0
    saved = ranks.share(saver.load() if args.resume and ranks.main else None)
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        epoch, step, seconds, history = (
            saved["epoch"],
            saved["step"],
            saved["seconds"],
            saved["history"],
        )
        generator.set_state(saved["generator"])
        seen = saved.get("samples_seen", 0)
        say(f"melody: resumed at epoch {epoch}, step {step}, {seconds / 60:.1f} min", flush=True)
    budget_s = args.melody_minutes * 60
    per_epoch = math.ceil(len(train) / args.batch)
    total_steps = per_epoch * args.melody_epochs
    warmup = args.melody_warmup
    steps, mood, metre = (t.to(ranks.device) for t in (train.steps, train.mood, train.metre))
    notes = train.steps[:, 1:, 0] >= 0  # (N, W-1): the targets the loss is a mean over

    def lr_at(s: int) -> float:
        if s < warmup:
            return args.melody_lr * (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
        return args.melody_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    while epoch < args.melody_epochs and seconds < budget_s:
        bar = tqdm(
            batches(len(train), args.batch, generator),
            desc=f"melody epoch {epoch + 1}",
            disable=not ranks.main,
        )
        started = time.perf_counter()
        for index in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            mine = ranks.shard(index)
            loss, parts = objective(steps[mine], mood[mine], metre[mine])
            optimizer.zero_grad(set_to_none=True)
            ranks.weigh(loss, int(notes[mine].sum()), int(notes[index].sum())).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            seen += len(index)
            bar.set_postfix(loss=f"{loss.item():.3f}", pitch=f"{parts['pitch'].item():.3f}")
            # Rank 0's clock decides, so that every rank stops after the same step.
            if ranks.agree(seconds + time.perf_counter() - started > budget_s):
                break
        seconds = ranks.agree(seconds + time.perf_counter() - started)
        epoch += 1
        if ranks.main:
            scores = melody_scores(model, on(ranks.device, valid))
            history.append({"epoch": epoch, "step": step, "minutes": seconds / 60, "valid": scores})
            print(f"melody epoch {epoch}: valid {json.dumps(scores)}", flush=True)
            saver.save(  # every epoch, so --resume loses at most one
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "seconds": seconds,
                    "history": history,
                    "generator": generator.get_state(),
                    "samples_seen": seen,
                }
            )
        ranks.wait()
    if not ranks.main:
        return None
    result = {
        "train_windows": len(train),
        "epochs": epoch,
        "steps": step,
        "batch": args.batch,
        "samples_seen": seen,
        "train_minutes": round(seconds / 60, 2),
        "history": history,
        "test": melody_scores(model, on(ranks.device, test)),
        "ngram_test": ngram_baseline(train, test),
    }
    checkpoint.save(model, "melody", out, {"proxy_stats": stats.as_dict(), "training": result})
    return result


# ---------------------------------------------------------------- harmony


def train_harmony(args, splits, stats, out: Path, state_dir: Path, ranks: Ranks) -> dict | None:
    train = data.harmony_examples(splits["train"], stats)
    valid = data.harmony_examples(splits["valid"], stats)
    test = data.harmony_examples(splits["test"], stats)
    if ranks.main:
        print(
            f"harmony: {len(train)} train, {len(valid)} valid, {len(test)} test half bars",
            flush=True,
        )
    if min(len(train), len(valid), len(test)) == 0:
        raise SystemExit("harmony: the dataset holds no chorale in some split; build it in full")
    model = HarmonyPredictor(model_config(args, "harmony")).to(ranks.device)
    objective = ranks.wrap(Objective(model, HarmonyPredictor.loss))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    best, best_state, history, seen = -1.0, None, [], 0
    on_device = on(ranks.device, train)

    @torch.no_grad()
    def accuracy(examples: data.HarmonyExamples) -> tuple[float, float]:
        examples = on(ranks.device, examples)
        model.eval()
        logits = model(examples.melody, examples.previous, examples.mood)
        model.train()
        nll = F.cross_entropy(logits, examples.target).item()
        return (logits.argmax(-1) == examples.target).float().mean().item(), nll

    for epoch in tqdm(range(args.harmony_epochs), desc="harmony", disable=not ranks.main):
        for index in batches(len(train), args.harmony_batch, generator):
            mine = ranks.shard(index)
            loss = objective(
                on_device.melody[mine],
                on_device.previous[mine],
                on_device.mood[mine],
                on_device.target[mine],
            )
            optimizer.zero_grad(set_to_none=True)
            ranks.weigh(loss, len(mine), len(index)).backward()
            optimizer.step()
            seen += len(index)
        if ranks.main:
            acc, nll = accuracy(valid)
            history.append({"epoch": epoch + 1, "valid_accuracy": acc, "valid_nll": nll})
            if acc > best:
                best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        ranks.wait()
    if not ranks.main:
        return None
    model.load_state_dict(best_state)
    model.eval()
    # Baseline: the chord most often heard in training under the half bar's first melody note.
    by_note: dict[int, Counter] = defaultdict(Counter)
    for note, chord in zip(train.first_note.tolist(), train.target.tolist(), strict=True):
        by_note[note][chord] += 1
    overall = Counter(train.target.tolist()).most_common(1)[0][0]
    guesses = [
        by_note[n].most_common(1)[0][0] if by_note[n] else overall for n in test.first_note.tolist()
    ]
    baseline = sum(g == t for g, t in zip(guesses, test.target.tolist(), strict=True)) / len(test)
    test_acc, test_nll = accuracy(test)
    result = {
        "train_half_bars": len(train),
        "chord_classes": CHORD_CLASSES,
        "epochs": args.harmony_epochs,
        "batch": args.harmony_batch,
        "samples_seen": seen,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "best_valid_accuracy": best,
        "test_accuracy": test_acc,
        "test_nll": test_nll,
        "baseline_test_accuracy": baseline,
        "baseline": "most frequent training chord under the half bar's first melody note",
        "history": history[-5:],
    }
    checkpoint.save(model, "harmony", out, {"proxy_stats": stats.as_dict(), "training": result})
    return result


# ---------------------------------------------------------------- groove


def groove_units(examples: data.GrooveExamples, index: torch.Tensor) -> tuple[int, int]:
    """What the groove's two losses are means over: steps inside the bars, and onsets."""
    inside = step_mask(examples.bar_steps[index])
    return int(inside.sum()), int((inside & (examples.onsets[index] > 0.5)).sum())


def train_groove(args, splits, stats, out: Path, state_dir: Path, ranks: Ranks) -> dict | None:
    train = data.groove_examples(splits["train"], stats)
    valid = data.groove_examples(splits["valid"], stats)
    test = data.groove_examples(splits["test"], stats)
    if ranks.main:
        print(f"groove: {len(train)} train, {len(valid)} valid, {len(test)} test bars", flush=True)
    model = GroovePredictor(model_config(args, "groove")).to(ranks.device)
    on_device = on(ranks.device, train)
    objective = ranks.wrap(Objective(model, lambda m, index: groove_loss(m, on_device, index)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    history, seen = [], 0

    for epoch in tqdm(range(args.groove_epochs), desc="groove", disable=not ranks.main):
        for index in batches(len(train), args.groove_batch, generator):
            mine = ranks.shard(index)
            bce, mse = objective(mine)
            (in_mine, on_mine), (in_all, on_all) = (
                groove_units(train, mine),
                groove_units(train, index),
            )
            loss = ranks.weigh(bce, in_mine, in_all) + 0.5 * ranks.weigh(mse, on_mine, on_all)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
        if ranks.main:
            history.append(
                {"epoch": epoch + 1, "valid": groove_scores(model, on(ranks.device, valid))}
            )
        ranks.wait()
    if not ranks.main:
        return None
    model.eval()
    # Baseline: each step's onset rate and mean accent for its metre, ignoring the mood.
    rate = defaultdict(lambda: torch.zeros(2, train.onsets.shape[1]))
    for metre in train.metre.unique().tolist():
        chosen = train.metre == metre
        onsets = train.onsets[chosen]
        counts = onsets.sum(0)
        accent = (train.accents[chosen] * onsets).sum(0) / counts.clamp_min(1)
        rate[metre] = torch.stack([onsets.mean(0).clamp(1e-3, 1 - 1e-3), accent])
    base = torch.stack([rate[m] for m in test.metre.tolist()])  # (N, 2, STEPS)
    inside = step_mask(test.bar_steps)
    at_onsets = inside & (test.onsets > 0.5)
    baseline = {
        "onset_bce": F.binary_cross_entropy(base[:, 0][inside], test.onsets[inside]).item(),
        "accent_mse": F.mse_loss(base[:, 1][at_onsets], test.accents[at_onsets]).item(),
    }
    result = {
        "train_bars": len(train),
        "epochs": args.groove_epochs,
        "batch": args.groove_batch,
        "samples_seen": seen,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "test": groove_scores(model, on(ranks.device, test)),
        "baseline_test": baseline,
        "baseline": "per-metre onset rate and mean accent of each step (no mood, no previous bar)",
        "history": history[-3:],
    }
    checkpoint.save(model, "groove", out, {"proxy_stats": stats.as_dict(), "training": result})
    return result


def proxy_distribution(records: list[dict], stats) -> dict:
    """How the proxy labels spread over the training phrases: histograms, quadrants, sources."""
    by_source: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        labels = data.bar_labels(record, stats)
        by_source[record["source"]].extend(labels[:: data.proxy.PHRASE_BARS])
    every = torch.tensor([label for labels in by_source.values() for label in labels])
    edges = torch.linspace(-1, 1, 11)

    def histogram(values: torch.Tensor) -> list[int]:
        return torch.histogram(values.clamp(-1, 1), bins=edges).hist.int().tolist()

    valence, arousal = every[:, 0], every[:, 1]
    quadrants = {
        "happy_excited": ((valence > 0) & (arousal > 0)).float().mean().item(),
        "happy_calm": ((valence > 0) & (arousal <= 0)).float().mean().item(),
        "sad_excited": ((valence <= 0) & (arousal > 0)).float().mean().item(),
        "sad_calm": ((valence <= 0) & (arousal <= 0)).float().mean().item(),
    }
    return {
        "phrases": len(every),
        "bin_edges": [round(e, 2) for e in edges.tolist()],
        "valence_histogram": histogram(valence),
        "arousal_histogram": histogram(arousal),
        "valence_mean_std": [valence.mean().item(), valence.std().item()],
        "arousal_mean_std": [arousal.mean().item(), arousal.std().item()],
        "valence_arousal_correlation": torch.corrcoef(every.T)[0, 1].item(),
        "quadrants": quadrants,
        "by_source": {
            source: {
                "phrases": len(labels),
                "valence_mean": sum(v for v, _ in labels) / len(labels),
                "arousal_mean": sum(a for _, a in labels) / len(labels),
            }
            for source, labels in sorted(by_source.items())
        },
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="On several processes: torchrun --standalone --nproc_per_node=N tools/train.py "
        "[options]. Batch sizes are global (each process takes 1/N of every batch), so a step "
        "sees the same samples as one process; rank 0 evaluates and writes the checkpoints.",
    )
    parser.add_argument(
        "--dataset", type=Path, default=ROOT / "cache" / "dataset" / "works.jsonl.gz"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--state", type=Path, default=ROOT / "cache" / "train")
    parser.add_argument("--models", default="harmony,groove,melody")
    parser.add_argument("--resume", action="store_true", help="carry on from cache/train/*.pt")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads per process (default 2, shared among the processes on this machine)",
    )
    parser.add_argument("--batch", type=int, default=64, help="melody batch (over all processes)")
    parser.add_argument("--harmony-batch", type=int, default=128)
    parser.add_argument("--groove-batch", type=int, default=256)
    parser.add_argument("--melody-epochs", type=int, default=10)  # as shipped
    parser.add_argument("--melody-minutes", type=float, default=35.0)
    parser.add_argument("--melody-lr", type=float, default=2e-3)
    parser.add_argument("--melody-warmup", type=int, default=200, help="steps of linear warm-up")
    parser.add_argument("--harmony-epochs", type=int, default=60)
    parser.add_argument("--groove-epochs", type=int, default=12)
    parser.add_argument("--limit", type=int, help="use only the first N records (a smoke run)")
    parser.add_argument(
        "--config",
        type=config_override,
        action="append",
        default=[],
        metavar="KIND=JSON",
        help="model config fields to change, e.g. 'harmony={\"hidden\": 64}' (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configs: dict[str, dict] = {}
    for kind, fields in args.config:
        configs.setdefault(kind, {}).update(fields)
    args.config = configs
    with open_ranks() as ranks:
        return train(args, ranks)


def train(args: argparse.Namespace, ranks: Ranks) -> int:
    """Every model asked for, on this rank; rank 0 writes checkpoints and `metrics.json`."""
    seed_everything(args.seed + ranks.rank)  # dropout differs by rank; shuffles use args.seed
    torch.set_num_threads(args.threads or threads_per_process())
    records = list(data.read_records(args.dataset))
    if args.limit:
        records = records[: args.limit]
    splits = {
        name: [r for r in records if r["split"] == name] for name in ("train", "valid", "test")
    }
    stats = data.fit_proxy_stats(splits["train"])
    metrics_path = args.out / "metrics.json"
    if ranks.main:
        print({name: len(rs) for name, rs in splits.items()}, flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        metrics["proxy_stats"] = stats.as_dict()
        dataset_stats = args.dataset.parent / "stats.json"
        if dataset_stats.is_file():  # what build_dataset.py parsed, kept with the checkpoints
            metrics["dataset"] = json.loads(dataset_stats.read_text())
        metrics["proxy_distribution"] = proxy_distribution(splits["train"], stats)
    trainers = {"melody": train_melody, "harmony": train_harmony, "groove": train_groove}
    for kind in args.models.split(","):
        started = time.perf_counter()
        result = trainers[kind](args, splits, stats, args.out, args.state, ranks)
        if ranks.main:
            metrics[kind] = result
            metrics[kind]["processes"] = ranks.world
            metrics[kind]["threads"] = torch.get_num_threads()  # each process's
            metrics[kind]["wall_minutes"] = round((time.perf_counter() - started) / 60, 2)
            metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
            print(f"{kind}: done in {metrics[kind]['wall_minutes']} min", flush=True)
        ranks.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
