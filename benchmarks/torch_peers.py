"""PyTorch peers of kd_jax's train steps: the same architectures, losses, optimizer and clipping.

PyTorch is a benchmark peer only, never a kd_jax dependency: `pip install torch==2.13.0` (CPU wheel).
The teacher peer is Hugging Face `BertForSequenceClassification` loaded from the same safetensors folder.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Conv1d(padding='same') warns for even widths (it pads a copy); the copy is part of the peer's real cost.
warnings.filterwarnings("ignore", message=".*padding='same'.*")


def listwise_rows(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  """Per-claim softmax cross-entropy against the gold docs (mass split equally), and has-gold rows."""
  gold = (labels > 0).float()
  n_gold = gold.sum(-1)
  loss = -((gold / n_gold.clamp(min=1)[:, None]) * F.log_softmax(logits, -1)).sum(-1)
  return loss, n_gold > 0


def listwise_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
  loss, rows = listwise_rows(logits, labels)
  return (loss * rows).sum() / rows.sum().clamp(min=1)


def distill_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 alpha: float) -> torch.Tensor:
  """kd_jax's combined loss: per claim alpha * T^2 KL(teacher || student) + (1 - alpha) * listwise."""
  log_s = F.log_softmax(logits / temperature, -1)
  log_t = F.log_softmax(teacher / temperature, -1)
  kl = temperature**2 * (log_t.exp() * (log_t - log_s)).sum(-1)
  hard, has_gold = listwise_rows(logits, labels)
  return torch.where(has_gold, alpha * kl + (1 - alpha) * hard, kl).mean()


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  """Max over time of h [N, L, F] at valid positions; zeros for an all-padding sequence."""
  filled = h.masked_fill(~mask[..., None], torch.finfo(h.dtype).min)
  return torch.where(mask.any(-1, keepdim=True), filled.max(1).values, 0.0)


class CNNTower(nn.Module):
  def __init__(self, vocab: int, dim: int = 50, widths=(1, 2, 3, 5), filters: int = 128, out: int = 256):
    super().__init__()
    self.embed = nn.Embedding(vocab, dim)
    self.convs = nn.ModuleList(nn.Conv1d(dim, filters, w, padding="same") for w in widths)
    self.proj, self.drop = nn.Linear(filters * len(widths), out), nn.Dropout(0.1)

  def forward(self, ids: torch.Tensor) -> torch.Tensor:
    mask = ids != 0
    x = self.drop(self.embed(ids) * mask[..., None]).transpose(1, 2)  # Conv1d is channels-first
    z = torch.cat([masked_max(F.relu(conv(x)).transpose(1, 2), mask) for conv in self.convs], -1)
    return self.proj(self.drop(z))


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
  """Reverses the first `lengths[i]` steps of each sequence x[i] [L, F]; padding stays where it is."""
  steps = torch.arange(x.shape[1])[None, :]
  order = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
  return x.gather(1, order[..., None].expand_as(x))


class BiLSTMTower(nn.Module):
  """BiLSTM over padded batches. Default: two unidirectional LSTMs, the backward one reading each sequence reversed
  within its length (what Flax's Bidirectional does). `packed=True`: the textbook packed sequences, whose
  backward pass is many times slower on CPU, so it is only an extra row."""

  def __init__(self, vocab: int, dim: int = 50, hidden: int = 128, out: int = 256, packed: bool = False):
    super().__init__()
    self.embed, self.packed = nn.Embedding(vocab, dim), packed
    if packed:
      self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
    else:
      self.fwd, self.bwd = nn.LSTM(dim, hidden, batch_first=True), nn.LSTM(dim, hidden, batch_first=True)
    self.proj, self.drop = nn.Linear(2 * hidden, out), nn.Dropout(0.1)

  def forward(self, ids: torch.Tensor) -> torch.Tensor:
    mask = ids != 0
    x = self.drop(self.embed(ids) * mask[..., None])
    lengths = mask.sum(-1).clamp(min=1)
    if self.packed:
      h, _ = self.lstm(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
      h, _ = pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
    else:  # outputs past each length are garbage and never pooled
      h = torch.cat([self.fwd(x)[0], reverse_valid(self.bwd(reverse_valid(x, lengths))[0], lengths)], -1)
    return self.proj(self.drop(masked_max(h, mask)))


class DualEncoder(nn.Module):
  """One shared tower for claims and documents, dot-product scores [B, K]."""

  def __init__(self, tower: nn.Module):
    super().__init__()
    self.tower = tower

  def forward(self, claims: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    b, k, length = docs.shape
    return torch.einsum("bd,bkd->bk", self.tower(claims), self.tower(docs.reshape(b * k, length)).reshape(b, k, -1))


class BertPeer(nn.Module):
  """HF BertForSequenceClassification(num_labels=1) over pairs [B, K, L] -> logits [B, K]."""

  def __init__(self, model_dir: str):
    super().__init__()
    import transformers  # pylint: disable=import-outside-toplevel
    transformers.logging.set_verbosity_error()  # the fresh classifier head is expected
    transformers.logging.disable_progress_bar()
    self.bert = transformers.BertForSequenceClassification.from_pretrained(model_dir, num_labels=1,
                                                                           local_files_only=True)

  def forward(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, k, length = ids.shape
    flat = [t.reshape(b * k, length) for t in (ids, types, mask)]
    return self.bert(input_ids=flat[0], token_type_ids=flat[1], attention_mask=flat[2]).logits.reshape(b, k)


def make_trainer(model: nn.Module, inputs: list[np.ndarray], loss: Callable[[torch.Tensor], torch.Tensor],
                 lr: float, weight_decay: float, clip: float) -> Callable[[int], float]:
  """`run(n)` does n AdamW steps (with global-norm clipping) on one fixed batch; returns the last loss."""
  model.train()  # dropout on, as in kd_jax's train step
  tensors = [torch.from_numpy(np.asarray(x)) for x in inputs]
  opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

  def run(steps: int) -> float:
    for _ in range(steps):
      opt.zero_grad(set_to_none=True)
      value = loss(model(*tensors))
      value.backward()
      nn.utils.clip_grad_norm_(model.parameters(), clip)
      opt.step()
    return value.item()
  run.model = model  # for the report (e.g. which attention implementation HF picked)
  return run
