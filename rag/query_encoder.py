"""Embedding a question without torch: the bundled BERT encoder's forward pass in numpy.

A question is one short text, and the answer waits on it. Loading sentence-transformers
means importing torch and transformers first: 5 to 7 seconds on a 2-core machine before the
first question can be searched, for a model whose forward pass on 20 tokens takes a few
milliseconds. This module runs that same forward pass (token, position and type embeddings,
six post-LayerNorm transformer layers with exact GELU, mean pooling, L2 normalisation) on
the model's own safetensors weights and tokenizer, in float32 like torch on a CPU; its
vectors match sentence-transformers' to about 1e-6 (tested).

Only models that are exactly that shape are read here (`supports()`); any other embedding
model goes through sentence-transformers. Documents are always embedded there, in batches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
BATCH = 16  # texts per padded batch


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def supports(folder: Path) -> bool:
    """A BERT model with absolute positions and GELU, mean pooling, normalised output."""
    folder = Path(folder)
    modules = _read_json(folder / "modules.json")
    config = _read_json(folder / "config.json")
    if not isinstance(modules, list) or not isinstance(config, dict):
        return False
    types = [m.get("type") for m in modules]
    if types not in ([_TRANSFORMER, _POOLING, _NORMALIZE], [_TRANSFORMER, _POOLING]):
        return False
    pooling_dir = next((m.get("path") for m in modules if m.get("type") == _POOLING), None)
    pooling = _read_json(folder / (pooling_dir or "1_Pooling") / "config.json")
    if not isinstance(pooling, dict) or not pooling.get("pooling_mode_mean_tokens"):
        return False
    if any(pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                    "pooling_mode_mean_sqrt_len_tokens")):
        return False
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
        and types[-1] == _NORMALIZE
    )


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.2e-7 (Numerical Recipes' erfc), enough for float32; numpy has none."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0).astype(x.dtype, copy=False)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class BertQueryEncoder:
    """Embeds a few short texts with the model's weights, without torch. Loads in ~0.1 s."""

    def __init__(self, folder: Path, max_seq_length: int = 256):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = _read_json(folder / "config.json")
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_seq_length)
        self._path = folder / "model.safetensors"
        with safe_open(self._path, framework="numpy") as weights:
            names = set(weights.keys())
            self._prefix = "bert." if "bert.embeddings.word_embeddings.weight" in names else ""
            # Everything but the 30k-row word table, which is read a row per token instead.
            self.w = {name[len(self._prefix):]: weights.get_tensor(name) for name in names
                      if name.startswith(self._prefix) and "word_embeddings" not in name
                      and not name.endswith("position_ids")}

    def _word_rows(self, ids: list[int]) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(self._path, framework="numpy") as weights:
            table = weights.get_slice(f"{self._prefix}embeddings.word_embeddings.weight")
            return np.concatenate([table[i : i + 1] for i in ids])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for `texts`, in order; texts of similar length share a padded batch."""
        from threadpoolctl import threadpool_limits

        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(texts), self.w["embeddings.LayerNorm.weight"].shape[0]), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        # Small matrices: BLAS threads only wait on each other (10x slower on a busy 2-core
        # machine), so one thread.
        with threadpool_limits(1, user_api="blas"):
            for start in range(0, len(order), BATCH):
                group = order[start : start + BATCH]
                out[group] = self._forward([encodings[i] for i in group])
        return out

    def _forward(self, encodings: list) -> np.ndarray:
        w, eps = self.w, self.eps
        batch, n = len(encodings), max(len(e.ids) for e in encodings)
        ids = np.zeros((batch, n), dtype=np.int64)
        types = np.zeros((batch, n), dtype=np.int64)
        mask = np.zeros((batch, n), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            ids[row, :length], types[row, :length], mask[row, :length] = encoding.ids, encoding.type_ids, 1.0
        unique, where = np.unique(ids, return_inverse=True)
        x = (self._word_rows(unique.tolist())[where.reshape(batch, n)]
             + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        heads, size = self.heads, x.shape[-1] // self.heads
        scale = np.float32(1.0 / np.sqrt(size))
        # Padding keys get no attention (BERT adds the dtype's minimum, as here).
        key_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]

        def split(v):  # (batch, n, hidden) -> (batch, heads, n, size)
            return v.reshape(batch, n, heads, size).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def dense(v, name):
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (split(dense(x, f"attention.self.{name}")) for name in ("query", "key", "value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, n, heads * size)
            x = _layer_norm(x + dense(context, "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            hidden = dense(x, "intermediate.dense")
            hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + dense(hidden, "output.dense"),
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
