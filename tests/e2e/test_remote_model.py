"""Answers from a real OpenAI-compatible server on 127.0.0.1 (llama-cpp-python's server with the
bundled model): streamed and cited through the engine and `enclave-cli ask`; a wrong key, a
server that died and a server that hangs are clear errors within the read timeout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rag.answer.pipeline import Answer
from rag.config import Settings
from rag.engine import Engine
from rag.errors import ModelError
from rag.llm.bundled import default_model_path
from rag.llm.remote import RemoteModel
from tests.servers import model_server

KEY_ENV = "ENCLAVE_TEST_MODEL_KEY"
POLICY = (
    "Annual leave policy. Every employee receives 28 days of paid annual leave per year, "
    "including public holidays. Up to five unused days may be carried over into the next year "
    "with the written approval of a line manager.\n"
)
QUESTION = "How many days of paid annual leave do employees get?"
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with model_server(default_model_path(), tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


@pytest.fixture
def key(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, server.api_key)
    return server.api_key


def remote_settings(server, **kw) -> Settings:
    return Settings(llm_endpoint=server.url, llm_api_key_env=KEY_ENV, top_k=3, **kw)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave-policy.txt").write_text(POLICY)
    return folder


def test_the_engine_streams_a_cited_answer_from_the_server_and_contacts_nothing_else(
        server, key, docs, tmp_path, real_embedder, monkeypatch):
    engine = Engine(tmp_path / "data", settings=remote_settings(server), embedder=real_embedder)
    engine.index_all([docs])
    contacted = []
    real_connect = socket.socket.connect

    def recording(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            contacted.append(address[:2])
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    pieces, answer = [], None
    for event in engine.ask(QUESTION):
        if isinstance(event, Answer):
            answer = event
        else:
            pieces.append(event)
    engine.close()
    assert answer is not None and not answer.refused
    assert len(pieces) > 1  # streamed, not delivered whole
    assert answer.sources and answer.sources[0]["path"].endswith("leave-policy.txt")
    assert answer.model["where"] == f"127.0.0.1:{server.port}"
    assert contacted and set(contacted) == {("127.0.0.1", server.port)}


def test_the_servers_refusal_probability_is_the_local_models_and_refuse_at_acts_on_it(
        server, key, docs, tmp_path, real_embedder):
    from rag.llm.llama import InProcessModel
    from rag.answer.prompting import CANNOT_ANSWER, SYSTEM_PROMPT

    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Sources:\n\n(No sources were found for this question.)\n\n"
                                            "Question: Who won the 1998 football world cup?"}]
    remote = RemoteModel(server.url, api_key_env=KEY_ENV)
    local = InProcessModel(default_model_path(), n_ctx=4096)
    try:
        answer = "".join(remote.stream(messages, 8, refuse_at=1.0))
        p = remote.last_stats.refusal_probability
        assert answer and CANNOT_ANSWER not in answer
        list(local.stream(messages, 1))
        # The same model file behind the server: the same probability of opening with "I".
        assert p == pytest.approx(local.last_stats.refusal_probability, rel=0.05)
        assert list(remote.stream(messages, 8, refuse_at=p / 2)) == [CANNOT_ANSWER]
        assert remote.last_stats.finish == "refused"
        assert "".join(remote.stream(messages, 8)) and remote.last_stats.refusal_probability is None
    finally:
        remote.close()
        local.close()
    # Through the engine, the settings' cut reaches the server's answer.
    engine = Engine(tmp_path / "data", settings=remote_settings(server, model_refusal_probability=p / 10),
                    embedder=real_embedder)
    engine.index_all([docs])
    answer = [e for e in engine.ask(QUESTION) if isinstance(e, Answer)][0]
    engine.close()
    assert answer.refused and answer.refused_by == "model"
    assert answer.evidence["model_refusal_probability"] > p / 10


def cli(*args, data_dir, env_extra=None, timeout=600):
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_cli_ask_answers_through_the_server_and_a_wrong_key_is_a_clear_401(server, docs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    remote_settings(server).save(data)
    assert cli("index", str(docs), data_dir=data).returncode == 0
    proc = cli("ask", QUESTION, "--json", data_dir=data, env_extra={KEY_ENV: server.api_key})
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert not answer["refused"] and answer["answer"].strip()
    assert answer["sources"][0]["path"].endswith("leave-policy.txt")
    assert answer["model"]["endpoint"] == server.url

    wrong = cli("ask", QUESTION, data_dir=data, env_extra={KEY_ENV: "not-the-key"})
    assert wrong.returncode == 1
    assert (f"The model server at 127.0.0.1:{server.port} refused the API key (401 Unauthorized). "
            f"Check the key in the environment variable {KEY_ENV}.") in wrong.stderr
    assert "Traceback" not in wrong.stderr and "not-the-key" not in wrong.stderr


def test_a_refused_connection_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    model = RemoteModel(f"http://127.0.0.1:{port}")
    with pytest.raises(ModelError, match=rf"could not reach the model server at 127.0.0.1:{port} \(connection refused\)"):
        model.warm_up()


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_server_that_stops_mid_answer_is_an_error_within_the_read_timeout(tmp_path, how, monkeypatch):
    timeout_s = 20.0  # the first words must come within it on a busy machine, too
    with model_server(default_model_path(), tmp_path / "server.log") as own:
        monkeypatch.setenv(KEY_ENV, own.api_key)
        model = RemoteModel(own.url, api_key_env=KEY_ENV, timeout_s=timeout_s)
        stream = model.stream(MESSAGES, 400)
        assert next(stream)
        os.kill(own.process.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(ModelError, match="model server at 127.0.0.1") as caught:
                for _ in stream:
                    pass
        finally:
            os.kill(own.process.pid, signal.SIGKILL)
        elapsed = time.monotonic() - started
    words = "closed the connection" if how == "killed" else f"sent nothing for {timeout_s:g} s"
    assert words in str(caught.value)
    assert elapsed < timeout_s + 3
