"""The model host process: same answers as in-process, Stop between tokens, and crashes that
cost one answer (SIGKILL, SIGSEGV), with the host restarted for the next question."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from rag.errors import ModelCrashed, ModelInvalid
from rag.llm import ChatModel
from rag.llm.bundled import default_model_path
from rag.children import describe_exit
from rag.llm.hosted import HostedModel
from rag.llm.llama import InProcessModel
from rag.llm.base import CANNOT_ANSWER

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."},
]


@pytest.fixture
def hosted():
    model = HostedModel(default_model_path(), n_ctx=1024)
    yield model
    model.close()


def freeze_then_signal(model: HostedModel, sig: int) -> None:
    """Freeze the host (so the answer cannot finish first), queue `sig`, let it run into it."""
    pid = model.host_pid
    os.kill(pid, signal.SIGSTOP)
    os.kill(pid, sig)
    os.kill(pid, signal.SIGCONT)


def test_the_hosted_model_is_a_chat_model_and_streams_what_in_process_streams(hosted):
    assert isinstance(hosted, ChatModel)
    local = InProcessModel(default_model_path(), n_ctx=1024)
    try:
        assert hosted.prompt_tokens(MESSAGES) == local.prompt_tokens(MESSAGES)
        assert hosted.context_size == local.context_size == 1024
        assert list(hosted.stream(MESSAGES, 24)) == list(local.stream(MESSAGES, 24))
        assert hosted.last_stats.generated_tokens == local.last_stats.generated_tokens == 24
        assert hosted.info == local.info
        assert hosted.host_pid != os.getpid()
    finally:
        local.close()


def test_the_refusal_cut_reaches_the_host_and_its_probability_comes_back(hosted):
    answer = "".join(hosted.stream(MESSAGES, 8))
    p = hosted.last_stats.refusal_probability
    assert answer and 0.0 < p < 1.0
    assert list(hosted.stream(MESSAGES, 8, refuse_at=p / 2)) == [CANNOT_ANSWER]
    assert hosted.last_stats.finish == "refused" and hosted.last_stats.refusal_probability > p / 2


def test_stop_between_tokens_and_an_abandoned_stream_leave_the_host_usable(hosted):
    seen = []
    for piece in hosted.stream(MESSAGES, 200, should_stop=lambda: len(seen) >= 3):
        seen.append(piece)
    assert len(seen) == 3
    assert hosted.last_stats.finish == "cancelled"
    stream = hosted.stream(MESSAGES, 200)
    next(stream)
    stream.close()  # the consumer walks away mid-answer
    assert len(list(hosted.stream(MESSAGES, 8))) > 0
    assert hosted.last_stats.finish == "length"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_host_killed_mid_answer_costs_that_answer_only(hosted, caplog, sig):
    stream = hosted.stream(MESSAGES, 300)
    first = next(stream)
    assert first
    dead = hosted.host_pid
    freeze_then_signal(hosted, sig)
    with caplog.at_level(logging.ERROR, logger="rag.llm.hosted"), pytest.raises(ModelCrashed) as caught:
        list(stream)
    assert str(caught.value) == (
        f"The model stopped unexpectedly while answering (signal {int(sig)}). Enclave restarted it; ask again.")
    # The log names the signal; the host was replaced at once.
    assert f"signal {int(sig)} ({sig.name})" in caplog.text
    assert hosted.host_pid not in (None, dead)
    again = "".join(hosted.stream(MESSAGES, 12))
    assert again.strip() and hosted.crashes == 0


def test_two_crashes_in_a_row_with_gpu_layers_move_the_model_to_the_cpu():
    model = HostedModel(default_model_path(), n_ctx=512, gpu_layers=4)
    try:
        model.warm_up()
        assert model.info["gpu_layers"] == 4
        messages = []
        for _ in range(2):
            stream = model.stream(MESSAGES, 300)
            next(stream)
            freeze_then_signal(model, signal.SIGSEGV)
            with pytest.raises(ModelCrashed) as caught:
                list(stream)
            messages.append(str(caught.value))
        assert "Enclave restarted it; ask again." in messages[0]
        assert "on the CPU" in messages[1]
        model.warm_up()
        assert model.info["gpu_layers"] == 0
        assert "".join(model.stream(MESSAGES, 8)).strip()
    finally:
        model.close()


def test_hosts_ended_on_purpose_are_not_crashes_and_keep_the_model_on_the_gpu():
    # The window's watchdog ends a host that stopped answering; two such ends are not two
    # crashes in a row, so the model is not moved off the GPU for them.
    model = HostedModel(default_model_path(), n_ctx=512, gpu_layers=4)
    try:
        model.warm_up()
        for _ in range(2):
            stream = model.stream(MESSAGES, 300)
            next(stream)
            os.kill(model.host_pid, signal.SIGSTOP)  # frozen: it would never read a stop request
            assert model.end_host()
            with pytest.raises(ModelCrashed) as caught:
                list(stream)
            assert str(caught.value) == "The model host was ended because it stopped answering; ask again."
        assert model.crashes == 0 and not model.on_cpu_after_crashes
        model.warm_up()
        assert model.info["gpu_layers"] == 4
        assert "".join(model.stream(MESSAGES, 8)).strip()
    finally:
        model.close()


def test_a_host_that_dies_while_loading_is_a_clear_model_error(tmp_path):
    model = HostedModel(default_model_path(), n_ctx=512)
    try:
        model._start()
        os.kill(model.host_pid, signal.SIGKILL)
        with pytest.raises(ModelInvalid, match=r"could not be loaded: the model process stopped \(signal 9\)"):
            model.warm_up()
        assert not model.loaded
        model.warm_up()  # the next try starts a new host
        assert model.loaded
    finally:
        model.close()


def test_a_file_that_is_no_model_fails_before_any_process_starts(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model\n" * 50)
    model = HostedModel(bad)
    with pytest.raises(ModelInvalid, match="not a GGUF"):
        model.warm_up()
    assert model.host_pid is None


def test_closing_ends_the_host_process(hosted):
    hosted.warm_up()
    pid = hosted.host_pid
    hosted.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]


def test_exit_descriptions():
    assert describe_exit(-11) == "signal 11"
    assert describe_exit(3) == "exit code 3"
