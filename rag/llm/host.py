"""The model host: a process of its own that owns llama.cpp and nothing else.

Started by `HostedModel` as `python -m rag.llm.host FD`, it talks over the socket FD with
pickled tuples (both ends are Enclave's own code):

    -> ("load", {model_path, n_ctx, gpu_layers, seed, n_threads, flash_attn, expected_sha256})
    <- ("ok", {"context_size", "info", "sha256"}) | ("error", kind, message)
    -> ("count", messages)                       <- ("ok", tokens) | ("error", ...)
    -> ("stream", messages, max_tokens, temperature, refuse_at)
    <- ("piece", text) ... ("done", stats) | ("error", ...)
    -> ("stop",)    at any time: the stream in progress ends between two tokens
    -> ("quit",)    or the socket closing: the process exits

A reader thread takes "stop" as soon as it arrives, so Stop works while the main thread
decodes. llama.cpp's own output never mixes with the protocol: stdout is pointed at stderr,
which the parent keeps the last lines of for its log.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from multiprocessing.connection import Connection

from rag.children import die_with_parent


def serve(conn: Connection) -> None:
    from rag.errors import EnclaveError

    from .bundled import verify_sha256
    from .llama import InProcessModel

    stop = threading.Event()
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError, TypeError):  # TypeError: closed under us at exit
                stop.set()
                inbox.put(("quit",))
                return
            if message[0] == "stop":
                stop.set()
            else:
                inbox.put(message)

    threading.Thread(target=read, name="model-host-reader", daemon=True).start()
    model: InProcessModel | None = None
    while True:
        message = inbox.get()
        kind = message[0]
        if kind == "quit":
            break
        try:
            if kind == "load":
                params = dict(message[1])
                expected = params.pop("expected_sha256", None)
                sha = verify_sha256(params["model_path"], expected) if expected else None
                model = InProcessModel(**params)
                model.warm_up()
                conn.send(("ok", {"context_size": model.context_size, "info": model.info, "sha256": sha}))
            elif model is None:
                conn.send(("error", "ModelError", "The model is not loaded."))
            elif kind == "count":
                conn.send(("ok", model.prompt_tokens(message[1])))
            elif kind == "stream":
                stop.clear()  # a stop sent for an earlier stream was read before this request
                _, messages, max_tokens, temperature, refuse_at = message
                send = conn.send
                for piece in model.stream(messages, max_tokens, temperature, stop.is_set, refuse_at):
                    send(("piece", piece))
                send(("done", model.last_stats.to_json()))
            else:
                conn.send(("error", "ModelError", f"Unknown request {kind!r}."))
        except EnclaveError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            break
        except Exception as exc:  # noqa: BLE001 - reported to the parent, never swallowed
            traceback.print_exc()
            conn.send(("error", "ModelError", f"The model failed: {exc}"))
    if model is not None:
        model.close()


def main(argv: list[str]) -> int:
    die_with_parent()
    os.dup2(2, 1)  # native code that prints must not write into the protocol
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    conn = Connection(int(argv[1]))
    try:
        serve(conn)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
