"""The one seam between the answer pipeline and whatever generates text.

The engine holds a `ChatModel`; the answer pipeline needs only what this Protocol names.
Three implementations:

* `HostedModel` (`rag.llm.hosted`): llama.cpp in a model host process of its own, so a
  native crash costs one answer, never the window or the CLI. The default.
* `RemoteModel` (`rag.llm.remote`): any OpenAI-compatible server (llama.cpp's
  `llama-server`, llama-cpp-python's server, vLLM) that a team runs on a GPU box.
* `InProcessModel` (`rag.llm.llama`): llama.cpp in this process. The model host runs it;
  benchmarks compare against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]

# What the model is told to say when the sources hold no answer. It lives with the models,
# not the prompt, because they measure its probability and say it when refusing; the answer
# stage (rag/answer/pipeline.py) reads it, and phrasings like it, as a refusal.
CANNOT_ANSWER = "I cannot answer this from the sources."


@dataclass
class StreamStats:
    """Figures about the last `stream()` call (for logs, benchmarks and tests)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV cache entries were kept from before
    generated_tokens: int = 0
    # "stop" (end of turn), "length", "cancelled", "refused", "repeated" (the answer began to
    # repeat itself and was ended before the repeat: rag/llm/repetition.py)
    finish: str = ""
    # The probability the model gave to opening its answer with the refusal sentence
    # (CANNOT_ANSWER), read from the logits after the prompt; None where the
    # model does not expose them (a model server).
    refusal_probability: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class ChatModel(Protocol):
    """What answering needs from a model, wherever it runs.

    Methods may load the model lazily (the first call pays for it); `warm_up()` does it
    now. Errors are `rag.errors.ModelError`s whose messages are written for the user.
    """

    last_stats: StreamStats

    @property
    def loaded(self) -> bool: ...

    @property
    def context_size(self) -> int:
        """Tokens one prompt plus its answer may hold."""
        ...

    @property
    def info(self) -> dict[str, Any]:
        """Where answers are generated: {"where", "path" or "endpoint", "gpu_layers", ...}."""
        ...

    def prepare(self) -> None:
        """Begin loading in the background and return at once (a no-op where nothing loads)."""
        ...

    def warm_up(self) -> None: ...

    def prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens the model will read for `messages` (chat template included), in one call."""
        ...

    def stream(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        refuse_at: float | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated; ends early once `should_stop()` is
        true (checked between two tokens). Closing the iterator stops generation.

        `refuse_at`: when the model gives at least this probability to opening its answer
        with the refusal sentence, the answer is that sentence, decoded no further (a model
        that leans towards refusing is taken at its word; greedy decoding alone would
        refuse only when refusing is its single most likely opening). None: never. A
        model that cannot tell (a server) ignores it."""
        ...

    def close(self) -> None: ...
