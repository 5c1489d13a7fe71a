"""Held-out scores of the melody and groove models, shared by training and fine-tuning.

Both leave the model in the mode they found it in, so a training loop can score between epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from livekomp.models.data import GrooveExamples, MelodyExamples
from livekomp.models.groove import step_mask
from livekomp.models.melody import FIELDS


def batches(n: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Indices 0..n-1 shuffled by `generator`, in batches of `size`."""
    return list(torch.randperm(n, generator=generator).split(size))


class _Evaluating:
    """Eval mode and no gradients inside; the model's own mode back after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training
        self.no_grad = torch.no_grad()

    def __enter__(self) -> None:
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def melody_scores(
    model: nn.Module, examples: MelodyExamples, size: int = 128
) -> dict[str, dict[str, float]]:
    """Per field: mean negative log-likelihood per note (nats) and accuracy, teacher-forced.

    `model` is a `MelodyTransformer`, or one with LoRA layers injected (peft's inner model).
    """
    totals = {name: [0.0, 0, 0] for name in FIELDS}  # nll sum, correct, count
    with _Evaluating(model):
        for start in range(0, len(examples), size):
            steps = examples.steps[start : start + size]
            mood = examples.mood[start : start + size]
            metre = examples.metre[start : start + size]
            inputs, targets = steps[:, :-1].clamp_min(0), steps[:, 1:]
            past_k, past_v = model.empty_cache(steps.shape[0], steps.device)
            hidden, _, _ = model.trunk(inputs, mood[:, 1:], metre, past_k, past_v)
            logits = model.heads(hidden, targets[..., 0].clamp_min(0), targets[..., 1].clamp_min(0))
            for i, (name, field_logits) in enumerate(zip(FIELDS, logits, strict=True)):
                target = targets[..., i]
                valid = target >= 0
                nll = F.cross_entropy(field_logits[valid], target[valid], reduction="sum")
                totals[name][0] += nll.item()
                totals[name][1] += (field_logits[valid].argmax(-1) == target[valid]).sum().item()
                totals[name][2] += valid.sum().item()
    return {name: {"nll": s / n, "accuracy": c / n} for name, (s, c, n) in totals.items()}


def groove_loss(
    model: nn.Module, examples: GrooveExamples, index: torch.Tensor | slice = slice(None)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Onset binary cross-entropy and accent squared error over the chosen bars."""
    return model.loss(
        examples.mood[index],
        examples.metre[index],
        examples.previous[index],
        examples.onsets[index],
        examples.accents[index],
        step_mask(examples.bar_steps[index]),
    )


def groove_scores(model: nn.Module, examples: GrooveExamples) -> dict[str, float]:
    with _Evaluating(model):
        bce, mse = groove_loss(model, examples)
    return {"onset_bce": bce.item(), "accent_mse": mse.item()}
