"""Questions are embedded without torch; the vectors must be the full model's."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rag import query_encoder
from rag.config import default_embedding_model
from rag.embedding import SentenceEmbedder

TEXTS = [
    "How many days of paid annual leave do employees get?",
    "What is better than ugly?",
    "Répondez en français : où est la bibliothèque ? 日本語のテキスト 😀",
    "x",
    " ".join(["lighthouse"] * 400),  # longer than the model reads: cut at 256 word pieces
    "",
]


def test_the_numpy_forward_pass_matches_sentence_transformers(real_embedder):
    encoder = query_encoder.BertQueryEncoder(default_embedding_model())
    ours = encoder.embed(TEXTS)
    reference = real_embedder.embed(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    # Batched with padding, one at a time: the same vectors.
    alone = np.concatenate([encoder.embed([t]) for t in TEXTS])
    assert np.abs(alone - ours).max() < 1e-5


def test_a_question_is_embedded_before_the_full_model_loads(tmp_path, real_embedder):
    embedder = SentenceEmbedder(default_embedding_model())
    vector = embedder.embed(TEXTS[:1])
    assert embedder._model is None  # no torch model was loaded for it
    assert np.abs(vector - real_embedder.embed(TEXTS[:1])).max() < 1e-5
    many = [f"text {i}" for i in range(20)]
    embedder.embed(many)  # a batch of documents loads the full model
    assert embedder._model is not None


def test_other_models_are_left_to_sentence_transformers(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "modules.json").write_text('[{"type": "sentence_transformers.models.Transformer"}]')
    (folder / "config.json").write_text('{"model_type": "xlm-roberta"}')
    assert not query_encoder.supports(folder)
    assert query_encoder.supports(default_embedding_model())


def test_the_query_encoder_does_not_import_torch():
    import subprocess

    code = ("import sys; from rag.config import default_embedding_model; from rag.embedding import SentenceEmbedder; "
            "SentenceEmbedder(default_embedding_model()).embed(['a question']); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
