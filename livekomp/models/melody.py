"""Melody transformer: a small decoder-only model over notes, conditioned on valence and arousal.

One step is one note (`tokens.Step`: position, pitch, duration). The input of a step is the sum of
its three field embeddings, the metre, a learned position-in-context embedding and a linear map of
the mood, so the mood may change from one note to the next. The output predicts the *next* note
field by field — position first, then pitch given that position, then duration given both — so a
note costs one pass through the trunk.

Attention projections are named `q_proj`, `k_proj`, `v_proj`, `o_proj` so LoRA adapters can target
them. `trunk` takes and returns a key/value cache; a step with the cache gives the same output as
recomputing the whole context (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from livekomp.models import tokens

FIELDS = ("position", "pitch", "duration")


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh form: cheaper than erf on a CPU, and the NumPy heads compute it exactly."""
    return F.gelu(x, approximate="tanh")


@dataclass(frozen=True)
class MelodyConfig:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    context: int = 64
    dropout: float = 0.1
    position_vocab: int = tokens.POSITION_VOCAB
    pitch_vocab: int = tokens.PITCH_VOCAB
    duration_vocab: int = tokens.DURATION_VOCAB
    metre_vocab: int = tokens.METRE_VOCAB

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, config: MelodyConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.o_proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape  # x: (B, T, D); past_*: (B, H, P, Dh)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

        q = heads(self.q_proj(x))
        k = torch.cat([past_k, heads(self.k_proj(x))], dim=2)  # (B, H, P+T, Dh)
        v = torch.cat([past_v, heads(self.v_proj(x))], dim=2)
        mask = None  # one new step sees every key: the generation case, kept cheap
        if t > 1:
            # Query i (at absolute position past+i) sees keys 0..past+i.
            past = past_k.shape[2]
            key_index = torch.arange(past + t, device=x.device)
            query_index = torch.arange(t, device=x.device) + past
            mask = key_index[None, :] <= query_index[:, None]  # (T, P+T)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.o_proj(y), k, v


class Block(nn.Module):
    def __init__(self, config: MelodyConfig) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(config.d_model)
        self.attention = Attention(config)
        self.norm_2 = nn.LayerNorm(config.d_model)
        self.fc_in = nn.Linear(config.d_model, config.d_ff)
        self.fc_out = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attended, k, v = self.attention(self.norm_1(x), past_k, past_v)
        x = x + self.dropout(attended)  # (B, T, D)
        x = x + self.dropout(self.fc_out(gelu(self.fc_in(self.norm_2(x)))))  # (B, T, D)
        return x, k, v


class MelodyTransformer(nn.Module):
    def __init__(self, config: MelodyConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.position_embedding = nn.Embedding(config.position_vocab, d)
        self.pitch_embedding = nn.Embedding(config.pitch_vocab, d)
        self.duration_embedding = nn.Embedding(config.duration_vocab, d)
        self.metre_embedding = nn.Embedding(config.metre_vocab, d)
        self.place_embedding = nn.Embedding(config.context, d)  # where in the context window
        self.mood_proj = nn.Linear(2, d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d)
        # Heads: next position; next pitch given it; next duration given both.
        self.position_head = nn.Linear(d, config.position_vocab)
        self.given_position = nn.Embedding(config.position_vocab, d)
        self.pitch_head = nn.Linear(d, config.pitch_vocab)
        self.given_pitch = nn.Embedding(config.pitch_vocab, d)
        self.duration_head = nn.Linear(d, config.duration_vocab)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def empty_cache(
        self, batch: int = 1, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values for no context: (L, B, H, 0, Dh) each."""
        c = self.config
        shape = (c.n_layers, batch, c.n_heads, 0, c.d_model // c.n_heads)
        device = device or self.norm.weight.device
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def trunk(
        self,
        steps: torch.Tensor,
        mood: torch.Tensor,
        metre: torch.Tensor,
        past_k: torch.Tensor,
        past_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden states of new steps after `past` ones, and the grown cache.

        steps (B, T, 3) long: position, pitch, duration; mood (B, T, 2); metre (B,) long;
        past_k/past_v (L, B, H, P, Dh). Returns hidden (B, T, D) and keys/values (L, B, H, P+T, Dh).
        """
        _b, t, _ = steps.shape
        past = past_k.shape[3]
        place = torch.arange(past, past + t, device=steps.device)  # (T,)
        x = (
            self.position_embedding(steps[..., 0])
            + self.pitch_embedding(steps[..., 1])
            + self.duration_embedding(steps[..., 2])
            + self.mood_proj(mood)
            + self.metre_embedding(metre)[:, None, :]
            + self.place_embedding(place)[None, :, :]
        )  # (B, T, D)
        x = self.dropout(x)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past_k[i], past_v[i])  # x: (B, T, D); k, v: (B, H, P+T, Dh)
            keys.append(k)
            values.append(v)
        return self.norm(x), torch.stack(keys), torch.stack(values)

    def heads(
        self, hidden: torch.Tensor, position: torch.Tensor, pitch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits for the next note's fields, given its position and pitch (teacher forcing)."""
        position_logits = self.position_head(hidden)  # (B, T, Vpos)
        with_position = hidden + self.given_position(position)
        pitch_logits = self.pitch_head(gelu(with_position))  # (B, T, Vpitch)
        with_pitch = with_position + self.given_pitch(pitch)
        duration_logits = self.duration_head(gelu(with_pitch))  # (B, T, Vdur)
        return position_logits, pitch_logits, duration_logits

    def forward(
        self, steps: torch.Tensor, mood: torch.Tensor, metre: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss: predict steps[:, 1:] from steps[:, :-1]. Returns (loss, per-field loss).

        steps (B, T+1, 3), padded targets -1; mood (B, T+1, 2), the mood of each note. A step's
        input carries the mood of the note it predicts, so a new mood steers the very next note.
        """
        inputs, targets = steps[:, :-1].clamp_min(0), steps[:, 1:]  # (B, T, 3) each
        past_k, past_v = self.empty_cache(steps.shape[0], steps.device)
        hidden, _, _ = self.trunk(inputs, mood[:, 1:], metre, past_k, past_v)
        logits = self.heads(hidden, targets[..., 0].clamp_min(0), targets[..., 1].clamp_min(0))
        losses = {
            name: F.cross_entropy(
                field.reshape(-1, field.shape[-1]), targets[..., i].reshape(-1), ignore_index=-1
            )
            for i, (name, field) in enumerate(zip(FIELDS, logits, strict=True))
        }
        return sum(losses.values()), losses

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
