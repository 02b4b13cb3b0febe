"""llama.cpp in this process: loads a GGUF once, renders chats with the model's own
template, counts tokens exactly as they will be fed, and streams answer text.

The model host process (`rag.llm.host`) runs this class; the window and the CLI reach it
through `HostedModel`, so a crash in native code never takes them down. Benchmarks use it
directly to measure what the process boundary costs.

`InProcessModel.stream()` does not go through `Llama.create_chat_completion(stream=True)`.
That path re-detokenizes the whole completion and rescans stop strings for every token and
builds a response dict per token; on a fast GPU with a small model it reaches about half of
llama.cpp's own decode speed (see PERFORMANCE.md). `stream()` runs a lean loop on
llama.cpp's C API instead: one `llama_decode`, one greedy pick and one dictionary lookup per
token, with an incremental UTF-8 decoder so characters split across tokens come out whole.
The KV cache is reused across calls for the longest common token prefix (the system prompt
stays the same from question to question), so only the new part of a prompt is evaluated.
`stream_chat_completion()` keeps the library's own path as the reference that tests and the
benchmark compare against.

Threading: an `InProcessModel` (like the llama.cpp context inside it) belongs to one thread.
"""

from __future__ import annotations

import codecs
import ctypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag.errors import ModelError, ModelInvalid

from .base import CANNOT_ANSWER, Message, StreamStats
from .gguf import WHAT_TO_DO, GGUFInfo, check_gguf
from .repetition import RepetitionGuard

# Text forms of end-of-turn markers of common chat templates. Generation stops at an
# end-of-generation *token* first; these catch a marker the model spells out as plain
# text. Only the ones that occur in the model's template (or are its EOS text) are used.
_TURN_MARKERS = (
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end|>",
    "<|user|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "</s>",
    "[INST]",
)

_FALLBACK_TEMPLATE_FORMAT = "chatml"
_UNSEEN = object()


class InProcessModel:
    """Streams chat answers from a local GGUF model through llama.cpp, in this process.

    Configuration happens in `__init__`; the model is loaded once, lazily, by
    `warm_up()` (every method that needs the model calls it). One instance is owned by
    one thread: llama.cpp contexts must not be used from two threads at once.

    `gpu_layers=None` offloads every layer when llama.cpp was built with a GPU backend,
    none otherwise. `n_threads`, when given, is used for both decoding and prompt
    evaluation; None keeps llama-cpp-python's defaults (half the logical CPUs for
    decoding, all of them for prompts). On a busy machine (indexing at the same time)
    fewer threads can be much faster: llama.cpp's threads wait on each other.

    `flash_attn=None` turns flash attention on when layers run on a GPU (as llama.cpp's
    own tools do by default; llama-cpp-python turns it off) and leaves it off on the CPU.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_ctx: int = 4096,
        gpu_layers: int | None = None,
        seed: int = 0,
        n_threads: int | None = None,
        flash_attn: bool | None = None,
    ):
        if n_ctx < 16:
            raise ValueError(f"n_ctx must be at least 16, not {n_ctx}")
        self.model_path = Path(model_path)
        self.requested_n_ctx = n_ctx
        self.requested_gpu_layers = gpu_layers
        self.seed = seed
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        self.last_stats = StreamStats()
        self._gguf: GGUFInfo | None = None
        self._llama: Any = None
        self._lib: Any = None
        self._gpu_layers: int | None = None
        self._cached: list[int] | None = []  # tokens in the KV cache; None: unknown
        self._active: Iterator[str] | None = None

    # -- loading -------------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing loads in the background here: the first call does the work."""

    def warm_up(self) -> None:
        """Check the file, then load the model (once; later calls return at once)."""
        if self._llama is not None:
            return
        info = check_gguf(self.model_path)
        import llama_cpp  # heavy: loads the native library, so only when needed
        from llama_cpp import llama_chat_format

        gpu_layers = self._resolve_gpu_layers(llama_cpp)
        n_ctx = min(self.requested_n_ctx, info.context_length or self.requested_n_ctx)
        template_format = (
            "chat_template.default" if info.chat_template else _FALLBACK_TEMPLATE_FORMAT
        )
        try:
            llama = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_gpu_layers=gpu_layers,
                seed=self.seed,
                n_threads=self.n_threads,  # None: llama-cpp-python's defaults
                n_threads_batch=self.n_threads,
                flash_attn=gpu_layers != 0 if self.flash_attn is None else self.flash_attn,
                chat_format=template_format,
                verbose=False,
            )
        except Exception as error:  # llama.cpp reports every load failure as an exception
            raise ModelInvalid(
                f"{self.model_path} could not be loaded by llama.cpp ({error}). The file may "
                "be damaged, use a model architecture this version does not support, or "
                f"need more memory than is free. {WHAT_TO_DO}"
            ) from error

        lib = llama_cpp
        vocab = lib.llama_model_get_vocab(llama.model)
        eos, bos = lib.llama_vocab_eos(vocab), lib.llama_vocab_bos(vocab)

        def text_of(token: int) -> str:
            return lib.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")

        eos_text = text_of(eos) if eos >= 0 else ""
        bos_text = text_of(bos) if bos >= 0 else ""
        template = info.chat_template or llama_chat_format.CHATML_CHAT_TEMPLATE
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos_text, bos_token=bos_text
        )
        markers = [m for m in _TURN_MARKERS if m in template or m == eos_text]
        if eos_text and eos_text not in markers:
            markers.append(eos_text)
        self._stop_strings = tuple(markers)
        self._stop_chars = "".join(sorted({m[0] for m in markers}))
        stop_ids = {t for t in (eos, lib.llama_vocab_eot(vocab)) if t >= 0}
        for marker in markers:  # markers that are single special tokens
            ids = llama.tokenize(marker.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                stop_ids.add(ids[0])
        self._stop_ids = frozenset(stop_ids)

        self._vocab = vocab
        self._ctx = llama.ctx
        self._memory = lib.llama_get_memory(llama.ctx)
        self._n_ctx = llama.n_ctx()
        self._n_batch = llama.n_batch
        self._greedy = self._new_sampler(lib, 0.0)
        self._n_vocab = lib.llama_vocab_n_tokens(vocab)
        # One-token batch reused for every decode step: it points at `_token_slot`.
        self._token_slot = (lib.llama_token * 1)()
        self._one_token_batch = lib.llama_batch_get_one(self._token_slot, 1)
        self._pieces: dict[int, bytes | None] = {}  # token -> text bytes; None: stop
        # The refusal sentence's first token, as the answer's first token (with and without
        # a leading space: templates differ in what they end the assistant header with).
        self._refusal_starts = frozenset(
            ids[0] for ids in (llama.tokenize(text.encode(), add_bos=False, special=False)
                               for text in (CANNOT_ANSWER, " " + CANNOT_ANSWER)) if ids)
        self._lib = lib
        self._gpu_layers = gpu_layers
        self._gguf = info
        self._llama = llama
        self._cached = None  # nothing known about the fresh context: clear on first use

    def _resolve_gpu_layers(self, llama_cpp: Any) -> int:
        if self.requested_gpu_layers is not None:
            return int(self.requested_gpu_layers)
        return -1 if llama_cpp.llama_supports_gpu_offload() else 0

    def close(self) -> None:
        """Free the model and its context (a later call loads it again)."""
        self._close_active()
        if self._llama is not None:
            self._lib.llama_sampler_free(self._greedy)
            self._llama.close()
            self._llama = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass

    # -- properties ----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    @property
    def context_size(self) -> int:
        """Tokens the context holds: min(requested n_ctx, the model's trained context)."""
        self.warm_up()
        return self._n_ctx

    @property
    def gguf(self) -> GGUFInfo:
        self.warm_up()
        assert self._gguf is not None
        return self._gguf

    @property
    def info(self) -> dict[str, Any]:
        """Where the model comes from and how many layers run on the GPU (-1: all)."""
        if self._gpu_layers is None:
            if self.requested_gpu_layers is not None:
                layers = int(self.requested_gpu_layers)
            else:
                import llama_cpp

                layers = self._resolve_gpu_layers(llama_cpp)
        else:
            layers = self._gpu_layers
        return {"where": "this machine", "path": str(self.model_path), "gpu_layers": layers}

    # -- text <-> tokens -----------------------------------------------------------

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for `messages`, rendered with the model's chat template and
        ending with the assistant turn's header: exactly what `stream()` evaluates."""
        self.warm_up()
        return self._formatter(messages=messages).prompt

    def tokenize(self, text: str) -> list[int]:
        """Tokens of `text` as `stream()` feeds a rendered prompt (special tokens parsed)."""
        self.warm_up()
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens `stream(messages)` will evaluate: the template-rendered prompt, tokenized."""
        return len(self.tokenize(self.render_chat(messages)))

    # -- streaming -----------------------------------------------------------------

    def stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        refuse_at: float | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as the model decodes it.

        Stops at the model's end-of-turn, after `max_tokens` tokens (up to 3 more to
        finish a character split across tokens), or as soon as `should_stop()` returns
        True (checked before every token and between prompt batches). Starting a new
        stream closes one still open. Raises `ValueError` if the prompt leaves no room
        in the context; the prompt builder prevents that. `refuse_at`: see
        `ChatModel.stream`; the probability is read from the logits the prompt left, so
        it costs no decoding.
        """
        self.warm_up()
        self._close_active()
        prompt = self.tokenize(self.render_chat(messages))
        if not prompt:
            raise ValueError("the rendered prompt is empty")
        room = self._n_ctx - len(prompt)
        if room < 1:
            raise ValueError(
                f"the prompt has {len(prompt)} tokens but the context holds {self._n_ctx}"
            )
        iterator = self._generate(prompt, max_tokens, room, temperature, should_stop, refuse_at)
        self._active = iterator
        return iterator

    def reset_cache(self) -> None:
        """Forget the KV cache (the next prompt is evaluated from its first token)."""
        if self._llama is not None:
            self._close_active()
            self._lib.llama_memory_clear(self._memory, True)
            self._llama.reset()
            self._cached = []

    def _close_active(self) -> None:
        active, self._active = self._active, None
        if active is not None:
            active.close()  # type: ignore[attr-defined]

    def _new_sampler(self, lib: Any, temperature: float) -> Any:
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if temperature <= 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:  # llama-cpp-python's defaults for the other knobs
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(40))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(0.95, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(0.05, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(self.seed))
        return chain

    def _prefill(self, prompt: list[int], should_stop: Callable[[], bool] | None) -> bool:
        """Bring the KV cache to `prompt`, reusing the longest cached prefix.

        Leaves the logits of the prompt's last token ready. Returns False if
        `should_stop()` asked to stop between batches.
        """
        lib, memory = self._lib, self._memory
        cached = self._cached
        if cached is None:  # unknown state (fresh context, or the reference path ran)
            lib.llama_memory_clear(memory, True)
            cached = self._cached = []
        keep = 0
        for a, b in zip(cached, prompt):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)  # re-evaluate at least one token for fresh logits
        if keep < len(cached):
            if not lib.llama_memory_seq_rm(memory, 0, keep, -1):
                lib.llama_memory_clear(memory, True)  # e.g. recurrent models
                keep = 0
            del cached[keep:]
        self.last_stats.reused_tokens = keep
        todo = prompt[keep:]
        step = self._n_batch
        for start in range(0, len(todo), step):
            if should_stop is not None and should_stop():
                return False
            chunk = todo[start : start + step]
            array = (lib.llama_token * len(chunk))(*chunk)  # alive until decoded
            self._decode(lib.llama_batch_get_one(array, len(chunk)), len(chunk))
            cached.extend(chunk)
        return True

    def _decode(self, batch: Any, n_tokens: int) -> None:
        code = self._lib.llama_decode(self._ctx, batch)
        if code != 0:
            self._cached = None  # the cache may hold part of the batch
            raise ModelError(
                f"The model failed while reading {n_tokens} token(s) (llama.cpp code {code}). "
                "Try a shorter question or fewer sources."
            )

    def _generate(
        self,
        prompt: list[int],
        max_tokens: int,
        room: int,
        temperature: float,
        should_stop: Callable[[], bool] | None,
        refuse_at: float | None = None,
    ) -> Iterator[str]:
        lib = self._lib
        max_tokens = min(max_tokens, room)
        limit = min(max_tokens + 3, room)  # to finish a multi-byte character
        stats = self.last_stats = StreamStats(prompt_tokens=len(prompt))
        if should_stop is not None and should_stop():
            stats.finish = "cancelled"
            return
        if not self._prefill(prompt, should_stop):
            stats.finish = "cancelled"
            return
        stats.refusal_probability = self._refusal_probability()
        if refuse_at is not None and stats.refusal_probability is not None \
                and stats.refusal_probability >= refuse_at:
            stats.finish = "refused"
            yield CANNOT_ANSWER
            return
        sampler = self._greedy if temperature <= 0.0 else self._new_sampler(lib, temperature)
        lib.llama_sampler_reset(sampler)
        # Locals: this loop runs once per token.
        sample, ctx = lib.llama_sampler_sample, self._ctx
        if sampler is self._greedy and self.greedy_argmax:
            sample = self._argmax_sampler(lib)
        decode, batch, slot = lib.llama_decode, self._one_token_batch, self._token_slot
        pieces, piece_of = self._pieces, self._piece
        cached = self._cached
        assert cached is not None
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop_chars, pending, started = self._stop_chars, "", False
        guard = RepetitionGuard()  # greedy decoding loops: end at the first repeat
        feed = guard.feed
        generated = 0
        try:
            while True:
                token = sample(sampler, ctx, -1)
                piece = pieces.get(token, _UNSEEN)
                if piece is _UNSEEN:
                    piece = piece_of(token)
                generated += 1
                stats.generated_tokens = generated
                if piece is None:  # end of generation
                    stats.finish = "stop"
                    break
                text = utf8.decode(piece) if piece else ""
                if text:
                    if not started:
                        text = text.lstrip()
                        started = bool(text)
                    if pending or any(c in text for c in stop_chars):
                        text, pending, hit = self._hold_back(pending + text)
                        if hit:
                            shown = feed(text) + guard.finish()
                            if shown:
                                yield shown
                            stats.finish = "repeated" if guard.stopped else "stop"
                            return
                    if text:
                        shown = feed(text)
                        if shown:
                            yield shown
                        if guard.stopped:
                            stats.finish = "repeated"
                            return
                if generated >= max_tokens and (generated >= limit or not utf8.getstate()[0]):
                    stats.finish = "length"
                    break
                if should_stop is not None and should_stop():
                    stats.finish = "cancelled"
                    return
                slot[0] = token
                code = decode(ctx, batch)
                if code != 0:
                    self._decode(batch, 1)  # raises with a readable message
                cached.append(token)
            # Bytes of a character still cut off at the limit are dropped, not shown as "�".
            tail = pending
            if tail and not started:
                tail = tail.lstrip()
            tail = feed(tail) + guard.finish()
            if guard.stopped:
                stats.finish = "repeated"
            if tail:
                yield tail
        finally:
            if sampler is not self._greedy:
                lib.llama_sampler_free(sampler)

    def _refusal_probability(self) -> float | None:
        """P(the answer opens with the refusal sentence's first token), from the logits of
        the prompt's last token. Its first token is one the model would not begin an answer
        with otherwise ("I"), so this is how strongly the model leans towards refusing."""
        import numpy as np  # llama_cpp depends on it

        starts = self._refusal_starts
        pointer = self._lib.llama_get_logits_ith(self._ctx, -1)
        if not starts or not ctypes.cast(pointer, ctypes.c_void_p).value:
            return None
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        top = logits.max()
        return float(np.exp(logits[list(starts)] - top).sum() / np.exp(logits - top).sum())

    # Greedy decoding picks the highest logit. llama.cpp's sampler does that by copying all
    # logits into a candidate array first, a fixed cost per token that shows on a fast GPU;
    # numpy's argmax over a view of the same logits gives the same token (the first of
    # equal maxima, as llama.cpp) without the copy.
    greedy_argmax = True

    def _argmax_sampler(self, lib: Any) -> Callable[[Any, Any, int], int]:
        import numpy as np  # llama_cpp depends on it

        get_logits, greedy, n_vocab = lib.llama_get_logits_ith, self._greedy, self._n_vocab
        cast, void_p, sample = ctypes.cast, ctypes.c_void_p, lib.llama_sampler_sample
        view: list[Any] = [None, None]  # address, array over it

        def argmax(_sampler: Any, ctx: Any, index: int) -> int:
            pointer = get_logits(ctx, index)
            address = cast(pointer, void_p).value
            if not address:  # no logits: let llama.cpp report it
                return sample(greedy, ctx, index)
            if address != view[0]:
                view[0], view[1] = address, np.ctypeslib.as_array(pointer, shape=(n_vocab,))
            return int(view[1].argmax())

        return argmax

    def _piece(self, token: int) -> bytes | None:
        """Text bytes of `token` (None for an end-of-generation token); cached per id."""
        lib = self._lib
        if token in self._stop_ids or lib.llama_vocab_is_eog(self._vocab, token):
            piece = None
        else:
            buffer = ctypes.create_string_buffer(64)
            n = lib.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = lib.llama_token_to_piece(self._vocab, token, buffer, -n, 0, False)
            piece = buffer.raw[:n]
        self._pieces[token] = piece
        return piece

    def _hold_back(self, text: str) -> tuple[str, str, bool]:
        """Split `text` at an end-of-turn marker spelled out as text.

        Returns (text to emit, text to hold back because it may start a marker, found).
        """
        for marker in self._stop_strings:
            at = text.find(marker)
            if at >= 0:
                return text[:at], "", True
        keep = 0
        for marker in self._stop_strings:
            for k in range(min(len(marker) - 1, len(text)), keep, -1):
                if text.endswith(marker[:k]):
                    keep = k
                    break
        if keep:
            return text[:-keep], text[-keep:], False
        return text, "", False

    # -- the library's own path, kept as a reference --------------------------------

    def stream_chat_completion(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        """llama-cpp-python's `create_chat_completion(stream=True)` with the same template.

        Slower per token than `stream()`; tests and the benchmark compare against it.
        It keeps its own record of the KV cache, so the cache is reset around it.
        """
        self.warm_up()
        self.reset_cache()  # also closes a stream still open
        self._cached = None
        iterator = self._chat_completion(messages, max_tokens, temperature)
        self._active = iterator
        return iterator

    def _chat_completion(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Iterator[str]:
        chunks = self._llama.create_chat_completion(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=self.seed,
            stream=True,
        )
        try:
            for chunk in chunks:
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    yield delta
        finally:
            chunks.close()
            self._llama.reset()
            self._cached = None

