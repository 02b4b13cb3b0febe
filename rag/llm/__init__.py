"""Models that answer: one `ChatModel` seam, chosen once by the engine from its settings.

* `gguf`: header checks run before llama.cpp sees a file;
* `bundled`: where the bundled GGUF is, and its checksum;
* `llama`: llama.cpp in this process (`InProcessModel`), the lean streaming loop;
* `host` / `hosted`: the same loop in a model host process (`HostedModel`), the default;
* `remote`: an OpenAI-compatible server (`RemoteModel`), for a team's GPU box.
"""

from __future__ import annotations

import os

from .base import CANNOT_ANSWER, ChatModel, Message, StreamStats

__all__ = ["CANNOT_ANSWER", "ChatModel", "Message", "StreamStats", "open_chat_model"]


def open_chat_model(
    model_path: str | os.PathLike | None,
    *,
    n_ctx: int,
    gpu_layers: int | None,
    endpoint: str = "",
    api_key_env: str = "",
    endpoint_model: str = "",
    timeout_s: float = 60.0,
    ca_file: str = "",
) -> ChatModel:
    """A model server when `endpoint` is given, else the GGUF at `model_path` in a model host
    process (gpu_layers None: all that fit). Nothing is loaded or contacted until first use.

    The engine passes these from its settings: this package reads no settings of its own.
    """
    if endpoint:
        from .remote import RemoteModel

        return RemoteModel(endpoint, api_key_env=api_key_env, model=endpoint_model, timeout_s=timeout_s,
                           n_ctx=n_ctx, ca_file=ca_file)
    from .bundled import published_sha256
    from .hosted import HostedModel

    if model_path is None:
        raise ValueError("a local model needs its GGUF path")
    return HostedModel(model_path, n_ctx=n_ctx, gpu_layers=gpu_layers, expected_sha256=published_sha256(model_path))
