"""Models that answer: one `ChatModel` seam, chosen once from settings.

* `gguf`: header checks run before llama.cpp sees a file;
* `bundled`: where the bundled GGUF is, and its checksum;
* `llama`: llama.cpp in this process (`InProcessModel`), the lean streaming loop;
* `host` / `hosted`: the same loop in a model host process (`HostedModel`), the default;
* `remote`: an OpenAI-compatible server (`RemoteModel`), for a team's GPU box.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .base import ChatModel, Message, StreamStats

if TYPE_CHECKING:
    from rag.config import Settings

__all__ = ["ChatModel", "Message", "StreamStats", "open_chat_model"]


def open_chat_model(settings: "Settings", model_path: str | os.PathLike | None = None) -> ChatModel:
    """The model the settings ask for; nothing is loaded or contacted until first use.

    `model_path` (a GGUF given on the command line) always means a local model.
    """
    if settings.llm_endpoint and model_path is None:
        from .remote import RemoteModel

        return RemoteModel(
            settings.llm_endpoint,
            api_key_env=settings.llm_api_key_env,
            model=settings.llm_endpoint_model,
            timeout_s=settings.llm_timeout_s,
            n_ctx=settings.context_size,
            ca_file=settings.llm_ca_file,
        )
    from .bundled import published_sha256
    from .hosted import HostedModel

    path = model_path or settings.llm_model_path()
    return HostedModel(
        path,
        n_ctx=settings.context_size,
        gpu_layers=None if settings.gpu_layers < 0 else settings.gpu_layers,
        expected_sha256=published_sha256(path),
    )
