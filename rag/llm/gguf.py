"""GGUF header checks: a model file is read with `struct` *before* llama.cpp sees it.

llama.cpp can abort the whole process on some damaged files; this check turns the common
cases (not a GGUF file, an unsupported version, a header that does not parse, a truncated
download) into a `ModelInvalid` the user can act on. It reads only the header (a few MB for
a typical model, through mmap) and takes milliseconds.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ModelInvalid, ModelNotFound

WHAT_TO_DO = "Choose another model file in settings or pass --model."

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

# The types ggml-cpu's repack.cpp interleaves for matrix products (Q4_0, Q4_K, IQ4_NL).
_REPACKED_TYPES = frozenset({2, 12, 20})

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
    # Bytes of the weight matrices llama.cpp's CPU backend copies into an interleaved layout
    # at load (Q4_0, Q4_K, IQ4_NL; not the token embeddings): on a CPU that does so, they are
    # in memory twice, the mapped file's pages it read them from and the copy.
    repackable_bytes: int = 0
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
    return ModelInvalid(f"{path} is not a GGUF model file ({detail}). {WHAT_TO_DO}")


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
        raise ModelNotFound(f"The model file {path} does not exist. {WHAT_TO_DO}") from None
    except OSError as error:
        raise ModelInvalid(
            f"The model file {path} cannot be read ({error.strerror or error}). {WHAT_TO_DO}"
        ) from None
    if path.is_dir():
        raise ModelInvalid(f"{path} is a folder, not a GGUF model file. {WHAT_TO_DO}")
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
            f"The model file {path} cannot be read ({error.strerror or error}). {WHAT_TO_DO}"
        ) from None


def _truncated(path: Path, size: int, needed: int | None) -> ModelInvalid:
    described = (
        f"it has {size:,} bytes but its header describes {needed:,}"
        if needed
        else f"it ends inside its header, after {size:,} bytes"
    )
    return ModelInvalid(
        f"{path} is truncated: {described} (an interrupted download or copy?). "
        f"Download it again, or {WHAT_TO_DO[0].lower()}{WHAT_TO_DO[1:]}"
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
        repackable = 0
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
            if ggml_type in _REPACKED_TYPES and n_dims == 2 and name != b"token_embd.weight":
                repackable += n_bytes
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
        repackable_bytes=repackable if n_tensors else 0,
        metadata=metadata,
    )

