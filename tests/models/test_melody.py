"""The melody transformer: cache parity, training signal, LoRA-ready names, NumPy heads."""

import numpy as np
import torch

from livekomp.models import tokens
from livekomp.models.runtime import Heads
from tests.models.conftest import tiny_models


def random_steps(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.randint(0, tokens.POSITION_START, (1, n), generator=g),
            torch.randint(0, tokens.PITCH_START, (1, n), generator=g),
            torch.randint(0, tokens.DURATION_START, (1, n), generator=g),
        ],
        dim=-1,
    )  # (1, n, 3)


def test_a_step_with_the_cache_equals_recomputing_the_whole_context():
    model, _, _ = tiny_models()
    steps = random_steps(20)
    mood = torch.rand(1, 20, 2) * 2 - 1
    metre = torch.tensor([3])
    with torch.no_grad():
        full, _, _ = model.trunk(steps, mood, metre, *model.empty_cache())
        hidden, k, v = model.trunk(steps[:, :5], mood[:, :5], metre, *model.empty_cache())
        rows = [hidden]
        for t in range(5, 20):
            hidden, k, v = model.trunk(steps[:, t : t + 1], mood[:, t : t + 1], metre, k, v)
            rows.append(hidden)
    cached = torch.cat(rows, dim=1)
    assert k.shape[3] == 20
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert full.std() > 0.1  # not a constant output that would make parity trivial


def test_the_mood_steers_the_next_note():
    model, _, _ = tiny_models()
    steps = random_steps(8)
    metre = torch.tensor([3])
    with torch.no_grad():
        sad, _, _ = model.trunk(steps, torch.full((1, 8, 2), -1.0), metre, *model.empty_cache())
        glad, _, _ = model.trunk(steps, torch.full((1, 8, 2), 1.0), metre, *model.empty_cache())
    assert (sad - glad).abs().max() > 1e-2


def test_training_lowers_the_loss_on_a_repeated_phrase():
    model, _, _ = tiny_models()
    model.train()
    steps = torch.cat(
        [
            torch.tensor([[[tokens.POSITION_START, tokens.PITCH_START, tokens.DURATION_START]]]),
            random_steps(16),
        ],
        dim=1,
    )
    mood = torch.zeros(1, 17, 2)
    metre = torch.tensor([3])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, _ = model(steps, mood, metre)
    for _ in range(60):
        loss, parts = model(steps, mood, metre)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(parts) == {"position", "pitch", "duration"}
    assert loss.item() < first.item() / 2


def test_padding_targets_are_ignored():
    model, _, _ = tiny_models()
    steps = random_steps(10)
    padded = torch.cat([steps, torch.full((1, 5, 3), -1)], dim=1)
    mood = torch.zeros(1, 15, 2)
    with torch.no_grad():
        plain, _ = model(steps, mood[:, :10], torch.tensor([3]))
        with_pad, _ = model(padded, mood, torch.tensor([3]))
    torch.testing.assert_close(plain, with_pad)


def test_attention_projections_carry_the_names_lora_targets():
    model, _, _ = tiny_models()
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= names


def test_numpy_heads_match_the_torch_heads():
    model, _, _ = tiny_models()
    heads = Heads(model)
    hidden = torch.randn(1, 1, model.config.d_model)
    position, pitch = torch.tensor([[17]]), torch.tensor([[30]])
    with torch.no_grad():
        p_logits, n_logits, d_logits = model.heads(hidden, position, pitch)
    h = hidden[0, 0].numpy()
    np.testing.assert_allclose(heads.position(h), p_logits[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(heads.pitch(h, 17), n_logits[0, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(heads.duration(h, 17, 30), d_logits[0, 0].numpy(), atol=1e-5)
