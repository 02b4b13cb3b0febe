"""The remote client against a scripted loopback server that speaks llama-server's endpoints:
token counting through /apply-template and /tokenize, the context from /props, the key as a
bearer token, SSE streaming, Stop, errors in the stream, and the byte estimate elsewhere."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.errors import ModelError
from rag.llm import ChatModel
from rag.llm.remote import TEMPLATE_TOKENS_FIXED, TEMPLATE_TOKENS_PER_MESSAGE, RemoteModel
from rag.llm.base import CANNOT_ANSWER

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Où est la gare ?"}]


class Script:
    """What the fake server answers, and what it was asked."""

    def __init__(self, llama_server=True, pieces=(" Hello", ",", " world", "."), delay=0.0, error_after=None,
                 first_token=None):
        self.llama_server = llama_server
        # The first token's top log-probabilities for a request that asks for them; None:
        # such a request is refused with 400, as by a server without them.
        self.first_token = first_token
        self.pieces = list(pieces)
        self.delay = delay
        self.error_after = error_after
        self.requests: list[tuple[str, str, dict | None, str | None]] = []


def serve(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            script.requests.append((self.command, self.path, body, self.headers.get("Authorization")))
            return body

        def do_GET(self):  # noqa: N802
            self._record()
            if self.path == "/props" and script.llama_server:
                self._json(200, {"default_generation_settings": {"n_ctx": 2048}})
            elif self.path == "/v1/models":
                self._json(200, {"data": [{"id": "served.gguf"}]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            body = self._record()
            if self.path == "/apply-template" and script.llama_server:
                self._json(200, {"prompt": " | ".join(f"{m['role']}: {m['content']}" for m in body["messages"])})
            elif self.path == "/tokenize" and script.llama_server:
                self._json(200, {"tokens": list(range(len(body["content"].split())))})
            elif self.path == "/v1/chat/completions" and body.get("logprobs"):
                if script.first_token is None:
                    self._json(400, {"error": {"message": "logprobs is not supported"}})
                else:
                    top = [{"token": t, "logprob": lp} for t, lp in script.first_token]
                    self._json(200, {"choices": [{"message": {"content": script.first_token[0][0]},
                                                  "logprobs": {"content": [{"top_logprobs": top}]}}]})
            elif self.path == "/v1/chat/completions":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for n, piece in enumerate(script.pieces):
                    if script.error_after is not None and n == script.error_after:
                        self.wfile.write(b'data: {"error": {"message": "out of memory"}}\n\n')
                        self.wfile.flush()
                        return
                    chunk = {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(script.delay)
                final = {"choices": [{"delta": {}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 17, "completion_tokens": len(script.pieces)}}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
            else:
                self._json(404, {"error": "not found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fake(request):
    script = Script(**getattr(request, "param", {}))
    server = serve(script)
    yield script, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_llama_server_counts_tokens_and_gives_its_context_and_the_key_goes_as_a_bearer_token(fake, monkeypatch):
    script, url = fake
    monkeypatch.setenv("TEAM_KEY", "s3cret")
    model = RemoteModel(url + "/v1", api_key_env="TEAM_KEY", n_ctx=4096)
    assert isinstance(model, ChatModel)
    assert model.context_size == 2048  # the server's slot is smaller than settings ask for
    rendered = "system: Be brief. | user: Où est la gare ?"
    assert model.prompt_tokens(MESSAGES) == len(rendered.split())
    assert model.info == {"where": url.split("//")[1], "endpoint": url, "model": "served.gguf", "gpu_layers": None}
    assert {auth for *_, auth in script.requests} == {"Bearer s3cret"}


def test_a_stream_arrives_piece_by_piece_with_the_server_model_and_figures(fake):
    script, url = fake
    model = RemoteModel(url)
    pieces = list(model.stream(MESSAGES, 64, temperature=0.0))
    # Leading space of the first piece dropped; a word is shown once it is whole (the
    # repetition guard holds a word that may still be the start of a repeat).
    assert "".join(pieces) == "Hello, world." and pieces[0] == "Hello"
    assert (model.last_stats.finish, model.last_stats.prompt_tokens, model.last_stats.generated_tokens) == ("stop", 17, 4)
    chat = [body for method, path, body, _ in script.requests if path == "/v1/chat/completions"][0]
    assert chat["stream"] is True and chat["max_tokens"] == 64 and chat["model"] == "served.gguf"
    assert chat["messages"] == MESSAGES


LOOP = [" You", " can", " add", " files", "."] + [" You", " can", " add", " files", " [1]."] * 60


@pytest.mark.parametrize("fake", [{"pieces": LOOP, "delay": 0.005}], indirect=True)
def test_a_served_answer_that_repeats_itself_ends_before_the_repeat(fake):
    script, url = fake
    model = RemoteModel(url)
    started = time.monotonic()
    pieces = list(model.stream(MESSAGES, 512, temperature=0.0))
    assert "".join(pieces) == "You can add files."
    assert model.last_stats.finish == "repeated"
    assert time.monotonic() - started < 1.0  # 300 pieces at 5 ms would take 1.5 s


@pytest.mark.parametrize("fake", [{"pieces": [f" w{i}" for i in range(200)], "delay": 0.05}], indirect=True)
def test_stop_ends_the_stream_at_once(fake):
    _, url = fake
    model = RemoteModel(url)
    seen = []
    started = time.monotonic()
    for piece in model.stream(MESSAGES, 500, should_stop=lambda: len(seen) >= 3):
        seen.append(piece)
    assert len(seen) == 3 and model.last_stats.finish == "cancelled"
    assert time.monotonic() - started < 5  # 200 pieces at 50 ms would take 10 s


@pytest.mark.parametrize("fake", [{"error_after": 2}], indirect=True)
def test_an_error_inside_the_stream_is_a_model_error(fake):
    _, url = fake
    model = RemoteModel(url)
    got = []
    with pytest.raises(ModelError, match="failed while answering: out of memory"):
        for piece in model.stream(MESSAGES, 64):
            got.append(piece)
    assert got == ["Hello"]  # what came before the error ("," waits for the word it leads on to)


@pytest.mark.parametrize("fake", [{"llama_server": False}], indirect=True)
def test_a_server_that_cannot_count_gets_a_byte_estimate_that_never_undercounts(fake):
    _, url = fake
    model = RemoteModel(url, n_ctx=3000)
    assert model.context_size == 3000
    count = model.prompt_tokens(MESSAGES)
    byte_count = sum(len(m["content"].encode()) for m in MESSAGES)
    assert count == byte_count + TEMPLATE_TOKENS_FIXED + TEMPLATE_TOKENS_PER_MESSAGE * len(MESSAGES)
    assert "".join(model.stream(MESSAGES, 8)) == "Hello, world."


def test_an_address_that_is_no_url_is_refused_in_plain_words():
    with pytest.raises(ModelError, match="is not a URL like http://gpu-box.internal:8080"):
        RemoteModel("gpu-box:8080")


@pytest.mark.parametrize("fake", [{"first_token": [("The", math.log(0.5)), ("I", math.log(0.3)), (" I", math.log(0.05))]}],
                         indirect=True)
def test_refuse_at_reads_the_first_tokens_log_probabilities_in_one_request(fake):
    script, url = fake
    model = RemoteModel(url)
    assert list(model.stream(MESSAGES, 64, refuse_at=0.3)) == [CANNOT_ANSWER]
    assert model.last_stats.finish == "refused" and model.last_stats.refusal_probability == pytest.approx(0.35)
    probe = [body for _, path, body, _ in script.requests if path == "/v1/chat/completions"]
    assert len(probe) == 1 and probe[0]["stream"] is False and probe[0]["max_tokens"] == 1
    assert probe[0]["top_logprobs"] == 20 and probe[0]["messages"] == MESSAGES
    assert "".join(model.stream(MESSAGES, 64, refuse_at=0.4)) == "Hello, world."
    assert model.last_stats.refusal_probability == pytest.approx(0.35)


def test_a_server_without_log_probabilities_answers_as_without_refuse_at(fake):
    script, url = fake
    model = RemoteModel(url)
    assert "".join(model.stream(MESSAGES, 64, refuse_at=0.01)) == "Hello, world."
    assert model.last_stats.refusal_probability is None and model.last_stats.finish == "stop"
