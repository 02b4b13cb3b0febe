"""`RemoteModel`: answers from an OpenAI-compatible server that a team runs on its GPU box.

llama.cpp's `llama-server`, llama-cpp-python's server and vLLM all speak the same chat
completions API with streaming over server-sent events; plain httpx reads it. The server is
the only address Enclave contacts for answers, and only the question, the retrieved passages
and recent turns go to it.

- Timeouts: a connect timeout (at most 5 s) and a read timeout (`llm_timeout_s`): a server
  that stops mid-answer is an error within the read timeout, never a hang.
- The API key is read from the environment variable named in settings on each request; it is
  never written to settings or logs.
- Prompt fitting needs token counts. `llama-server` renders the chat template and tokenizes
  (`/apply-template`, `/tokenize`), llama-cpp-python's server counts tokens of text
  (`/extras/tokenize/count`, plus a margin for the template's role markers); otherwise
  every UTF-8 byte counts as a token, an estimate that can only overshoot for the byte-level
  tokenizers these servers use, so a prompt never overflows the server's context.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from rag.errors import ModelError

from .base import CANNOT_ANSWER, Message, StreamStats
from .repetition import RepetitionGuard

CONNECT_TIMEOUT_S = 5.0
# Role markers and separators a chat template adds around each message, counted generously.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_FIXED = 16
# The refusal sentence's first word: a server names tokens by their text ("I", " I").
_REFUSAL_OPENING = CANNOT_ANSWER.split()[0]


class ModelServerError(ModelError):
    """The model server could not be reached or failed; the message says which and why."""


class RemoteModel:
    """A `ChatModel` backed by an OpenAI-compatible HTTP server."""

    def __init__(
        self,
        endpoint: str,
        api_key_env: str = "",
        model: str = "",
        timeout_s: float = 60.0,
        n_ctx: int = 4096,
        ca_file: str = "",
    ):
        parts = urlsplit(endpoint.strip().rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelServerError(
                f"The model server address {endpoint!r} is not a URL like http://gpu-box.internal:8080. "
                "Fix llm_endpoint in settings."
            )
        path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
        self.root = f"{parts.scheme}://{parts.netloc}{path}"
        self.host = parts.netloc  # what messages, the status bar and PRIVACY.md name
        self.api_key_env = api_key_env
        self.model = model
        self.timeout_s = timeout_s
        self.requested_n_ctx = n_ctx
        self.ca_file = ca_file
        self.last_stats = StreamStats()
        self._client: Any = None
        self._context_size: int | None = None
        self._counter: str | None = None  # "llama-server", "extras" or "bytes"
        self._served_model = ""

    # -- HTTP ----------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            import httpx

            verify: Any = True
            if self.ca_file:
                import ssl

                verify = ssl.create_default_context(cafile=os.path.expanduser(self.ca_file))
            self._client = httpx.Client(
                base_url=self.root,
                timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
                verify=verify,
                trust_env=False,  # no proxy from the environment: the server named in settings only
                follow_redirects=False,
            )
        return self._client

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env, "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _failure(self, exc: Exception, during: str) -> ModelServerError:
        import httpx

        where = f"the model server at {self.host}"
        if isinstance(exc, httpx.ConnectTimeout):
            text = f"Enclave could not reach {where} within {min(CONNECT_TIMEOUT_S, self.timeout_s):g} s"
        elif isinstance(exc, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(exc).lower() else _short(exc)
            text = f"Enclave could not reach {where} ({reason})"
        elif isinstance(exc, httpx.ReadTimeout):
            text = f"{where[0].upper()}{where[1:]} sent nothing for {self.timeout_s:g} s {during}"
        elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            text = f"{where[0].upper()}{where[1:]} closed the connection {during}"
        else:
            text = f"The request to {where} failed {during} ({_short(exc)})"
        return ModelServerError(text + ". Check that the server is running, or clear llm_endpoint in settings "
                                "to answer on this machine.")

    def _check(self, response, during: str) -> None:
        if response.status_code < 400:
            return
        if response.status_code in (401, 403):
            if not self.api_key_env:
                hint = "Name the environment variable that holds the key in settings (llm_api_key_env)."
            elif not os.environ.get(self.api_key_env):
                hint = f"The environment variable {self.api_key_env} is not set: set it to the server's key."
            else:
                hint = f"Check the key in the environment variable {self.api_key_env}."
            raise ModelServerError(
                f"The model server at {self.host} refused the API key ({response.status_code} "
                f"{response.reason_phrase}). {hint}"
            )
        try:
            response.read()
            detail = _short(response.text, 200)
        except Exception:  # noqa: BLE001 - the status alone still says enough
            detail = ""
        raise ModelServerError(
            f"The model server at {self.host} answered {response.status_code} {response.reason_phrase} "
            f"{during}" + (f": {detail}" if detail else "") + "."
        )

    def _post(self, path: str, body: dict, during: str) -> dict:
        try:
            response = self.client.post(path, json=body, headers=self._headers())
        except Exception as exc:  # noqa: BLE001 - httpx errors become one readable message
            raise self._failure(exc, during) from None
        self._check(response, during)
        return response.json()

    def _get(self, path: str, during: str) -> Any:
        try:
            return self.client.get(path, headers=self._headers())
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc, during) from None

    # -- ChatModel -----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._counter is not None

    def prepare(self) -> None:
        """Nothing loads in the background here: the first call does the work."""

    def warm_up(self) -> None:
        """Ask the server what it is: its context size, its model, how it counts tokens."""
        if self._counter is not None:
            return
        during = "while Enclave asked what it serves"
        context = None
        props = self._get("/props", during)
        if props.status_code in (401, 403):
            self._check(props, during)
        if props.status_code == 200:  # llama-server
            data = props.json()
            settings = data.get("default_generation_settings") or {}
            context = settings.get("n_ctx") or data.get("n_ctx")
            self._counter = "llama-server"
        models = self._get("/v1/models", during)
        self._check(models, during)
        listed = [m.get("id", "") for m in (models.json().get("data") or [])]
        self._served_model = self.model or (listed[0] if listed else "")
        if self._counter is None:
            try:
                self._post("/extras/tokenize/count", {"input": "x"}, during)
                self._counter = "extras"
            except ModelServerError:
                self._counter = "bytes"
        self._context_size = min(int(context), self.requested_n_ctx) if context else self.requested_n_ctx

    @property
    def context_size(self) -> int:
        self.warm_up()
        assert self._context_size is not None
        return self._context_size

    @property
    def info(self) -> dict[str, Any]:
        return {"where": self.host, "endpoint": self.root, "model": self._served_model or self.model,
                "gpu_layers": None}

    def prompt_tokens(self, messages: list[Message]) -> int:
        self.warm_up()
        during = "while Enclave counted the prompt's tokens"
        if self._counter == "llama-server":
            prompt = self._post("/apply-template", {"messages": messages}, during)["prompt"]
            tokens = self._post("/tokenize", {"content": prompt, "add_special": True}, during)["tokens"]
            return len(tokens)
        overhead = TEMPLATE_TOKENS_FIXED + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
        if self._counter == "extras":
            text = "\n".join(m["content"] for m in messages)
            return self._post("/extras/tokenize/count", {"input": text}, during)["count"] + overhead
        return sum(len(m["content"].encode("utf-8")) for m in messages) + overhead

    def stream(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        refuse_at: float | None = None,
    ) -> Iterator[str]:
        """`refuse_at` (see `ChatModel.stream`) costs one more request: the first token alone,
        with the log-probabilities of the likeliest 20 (the server keeps the prompt it read,
        so the answer that follows does not read it again). A server that gives no
        log-probabilities answers as if `refuse_at` were None."""
        self.warm_up()
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        if self._served_model:
            body["model"] = self._served_model
        return self._stream(body, should_stop, refuse_at)

    def _stream(self, body: dict, should_stop: Callable[[], bool] | None,
                refuse_at: float | None = None) -> Iterator[str]:
        # A reader thread takes the events off the socket, so Stop is obeyed at once even
        # while the server is still reading the prompt.
        events: queue.Queue = queue.Queue()
        cancelled = threading.Event()
        reader = threading.Thread(target=self._read_events, args=(body, events, cancelled, refuse_at),
                                  name="model-server-stream", daemon=True)
        stats = self.last_stats = StreamStats()
        guard = RepetitionGuard()  # a served model loops like a local one: end at the first repeat
        reader.start()
        try:
            while True:
                if should_stop is not None and should_stop():
                    stats.finish = "cancelled"
                    return
                try:
                    kind, value = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if kind == "piece":
                    stats.generated_tokens += 1
                    shown = guard.feed(value)
                    if shown:
                        yield shown
                    if guard.stopped:
                        stats.finish = "repeated"
                        return  # closing the response ends the server's work
                elif kind == "lean":
                    stats.refusal_probability = value
                elif kind == "refuse":
                    stats.finish = "refused"
                    yield CANNOT_ANSWER
                    return
                elif kind == "done":
                    stats.finish = value.get("finish") or "stop"
                    stats.prompt_tokens = value.get("prompt_tokens") or 0
                    if value.get("completion_tokens"):
                        stats.generated_tokens = value["completion_tokens"]
                    rest = guard.finish()
                    if guard.stopped:
                        stats.finish = "repeated"
                    if rest:
                        yield rest
                    return
                else:
                    raise value
        finally:
            cancelled.set()  # the reader closes the response, which ends the server's work

    def _refusal_probability(self, body: dict) -> float | None:
        """P(the answer's first token is the refusal sentence's first word), from the server's top
        log-probabilities of the first token (0 when it is not among them); None when
        the server gives none."""
        import math

        during = "while reading the question"
        probe = dict(body, stream=False, max_tokens=1, logprobs=True, top_logprobs=20)
        try:
            response = self.client.post("/v1/chat/completions", json=probe, headers=self._headers())
        except Exception as exc:  # noqa: BLE001 - httpx errors become one readable message
            raise self._failure(exc, during) from None
        if response.status_code in (400, 422):  # a server that refuses the log-probability fields
            return None
        self._check(response, during)
        try:
            first = response.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if not first:
            return None
        return min(1.0, sum(math.exp(e["logprob"]) for e in first
                            if str(e.get("token", "")).strip() == _REFUSAL_OPENING))

    def _read_events(self, body: dict, events: queue.Queue, cancelled: threading.Event,
                     refuse_at: float | None = None) -> None:
        during = "while answering"
        finish, usage, started = None, {}, False
        try:
            if refuse_at is not None:
                lean = self._refusal_probability(body)
                events.put(("lean", lean))
                if lean is not None and lean >= refuse_at:
                    events.put(("refuse", None))
                    return
                if cancelled.is_set():
                    return
            with self.client.stream("POST", "/v1/chat/completions", json=body, headers=self._headers()) as response:
                self._check(response, "when asked for an answer")
                for line in response.iter_lines():
                    if cancelled.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        events.put(("done", {"finish": _finish(finish), **usage}))
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if chunk.get("error"):
                        error = chunk["error"]
                        detail = error.get("message", error) if isinstance(error, dict) else error
                        raise ModelServerError(f"The model server at {self.host} failed {during}: {_short(detail, 200)}.")
                    if chunk.get("usage"):
                        usage = {"prompt_tokens": chunk["usage"].get("prompt_tokens"),
                                 "completion_tokens": chunk["usage"].get("completion_tokens")}
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if not started:
                                text = text.lstrip()
                                started = bool(text)
                            if text:
                                events.put(("piece", text))
                        finish = choice.get("finish_reason") or finish
            if not cancelled.is_set():  # the body ended without [DONE]
                events.put(("error", ModelServerError(
                    f"The model server at {self.host} closed the connection {during}. Check that the "
                    "server is running, or clear llm_endpoint in settings to answer on this machine.")))
        except ModelServerError as exc:
            events.put(("error", exc))
        except Exception as exc:  # noqa: BLE001 - httpx errors become one readable message
            if not cancelled.is_set():
                events.put(("error", self._failure(exc, during)))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _finish(reason: str | None) -> str:
    return {"length": "length", "stop": "stop"}.get(reason or "", reason or "stop")


def _short(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
