"""The work the engine runs for the window: each job is `fn(engine, job)`, run where the
engine lives (its own process by default, see engine_host.py). This module, workers.py and
engine_host.py are the only desktop code that touches the engine; none of them imports Qt.

Jobs cross a process boundary, so the factories below return `functools.partial`s of
module-level functions (they pickle), never closures. Results are plain dicts and lists (the
same JSON shapes as enclave-cli) or the plain dataclasses of `rag.types`.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

DEFAULT_COLLECTION = "default"
WELCOME_COLLECTION = "Welcome"


def freeze_heap() -> None:
    """Move what a model load left on the heap out of the garbage collector's sight.

    A full collection walks every tracked object, torch's and Chroma's included, holding the
    GIL for up to 270 ms: the window stalls whichever thread triggers it. The objects a
    model load makes live as long as the process, so scanning them is waste. Freezing is
    cheap and is done again after each load, here on the worker thread, right after it.
    """
    import gc

    gc.freeze()


def load_model(engine, job) -> dict:
    info = engine.load_model()
    freeze_heap()
    return info


def _load_embedder(engine) -> None:
    engine.embedder.warm_up()
    freeze_heap()


def ensure_welcome(engine, job):
    _load_embedder(engine)
    report = engine.ensure_welcome()
    return report.to_json() if report is not None else None


def library(collection: str | None):
    return partial(_library, collection)


def _library(collection, engine, job) -> dict:
    from rag.errors import EnclaveError

    names = engine.collections()
    if DEFAULT_COLLECTION not in names:
        engine.create_collection(DEFAULT_COLLECTION)
        names = engine.collections()
    team_error = None
    if engine.settings.team.configured:  # the team's collections this member may see
        try:
            names = names + engine.team_collections()
        except EnclaveError as exc:
            team_error = str(exc)
    chosen = collection if collection in names else DEFAULT_COLLECTION
    return {
        "collections": names,
        "collection": chosen,
        "documents": [d.to_json() for d in engine.documents(chosen)],
        "stats": engine.stats(),
        "team_hosts": engine.settings.team.hosts(),
        "team_error": team_error,
    }


def index(paths: list[str], collection: str, force: bool = False, passwords: tuple[str, ...] = ()):
    return partial(_index, list(paths), collection, force, tuple(passwords))


def _index(paths, collection, force, passwords, engine, job):
    _load_embedder(engine)
    if force:  # the engine skips unchanged content; forgetting first makes it read it again
        engine.remove(paths, collection)
    yield from engine.index(paths, collection, passwords, should_stop=job.should_stop)


def reindex_catalog(engine, job) -> dict:
    """After a damaged store was set aside: read every document the catalog lists again."""
    _load_embedder(engine)
    return engine.reindex_catalog().to_json()


def remove(paths: list[str], collection: str):
    return partial(_call, "remove", list(paths), collection)


def create_collection(name: str):
    return partial(_call, "create_collection", name)


def rename_collection(old: str, new: str):
    return partial(_call, "rename_collection", old, new)


def delete_collection(name: str):
    return partial(_call, "delete_collection", name)


def document_text(path: str):
    return partial(_call, "document_text", path)


def _call(method: str, *args):
    """`engine.<method>(*args)`, as a job: the last two arguments are (engine, job)."""
    *args, engine, _job = args
    return getattr(engine, method)(*args)


def ask(question: str, collection: str, conversation: int | None):
    """Yields text pieces, then {"answer": Answer.to_json(), "conversation": id, "stopped": bool}."""
    return partial(_ask, question, collection, conversation)


def _ask(question, collection, conversation, engine, job):
    store = engine.conversations
    conversation_id = conversation
    row = store.get(conversation_id) if conversation_id is not None else None
    if row is None or row.collection != collection:
        # A conversation belongs to one collection: its earlier turns join a follow-up's
        # search, and they were answered from other documents.
        conversation_id = store.create(collection=collection)
    history = store.history(conversation_id)
    if store.get(conversation_id).title == "New conversation":
        store.rename(conversation_id, _title(question))
    store.add_message(conversation_id, "user", question)
    try:
        yield from _answer(question, collection, conversation_id, history, engine, job)
    except Exception as exc:
        # The question is in the history: so is why it has no answer (the job's failure
        # reaches the window as well).
        from rag.errors import EnclaveError

        store.add_failure(conversation_id, question,
                          str(exc) if isinstance(exc, EnclaveError) else "No answer: something went wrong inside Enclave. The details are in the log.")
        raise


def _answer(question, collection, conversation_id, history, engine, job):
    from rag.answer.pipeline import Answer, Quote

    store = engine.conversations
    task = _document_task(question, collection, engine, job)
    if task is not None:  # "summarize zen.pdf", "compare A and B": the whole documents, not top-k
        data = None
        for event in task:
            if isinstance(event, dict) and "kind" not in event:
                data = event
            else:
                yield event  # text, or the preview and progress the chat shows meanwhile
        data["question"] = question
        store.add_message(conversation_id, "assistant", data["answer"], data)
        yield {"answer": data, "conversation": conversation_id, "stopped": job.should_stop()}
        return
    answer = None
    for event in engine.ask(question, collection, None, history, should_stop=job.should_stop):
        if isinstance(event, Answer):
            answer = event
        else:
            yield event
            if isinstance(event, Quote):
                # The worker sends a value on when the next one arrives; without this the
                # quote would wait for the model's first token.
                yield ""
    data = answer.to_json()
    data["question"] = question
    store.add_message(conversation_id, "assistant", answer.text, data)
    yield {"answer": data, "conversation": conversation_id, "stopped": job.should_stop()}


def _document_task(question, collection, engine, job):
    """The summary or comparison a message asks for (rag/documents/intent.py: a rule, no
    model call), as a generator of text pieces then an answer-shaped dict; None otherwise."""
    from rag.documents.intent import document_intent

    names = [d.path for d in engine.documents(collection) if d.state == "indexed"]
    intent = document_intent(question, names)
    if intent is None:
        return None
    return _run_document_task(intent, collection, engine, job)


def _run_document_task(intent, collection, engine, job):
    from rag.documents.chat import comparison_message, summary_message
    from rag.documents.compare import Comparison
    from rag.documents.mapreduce import PartProgress
    from rag.documents.summary import Summary

    if intent.task == "summarize":
        events = engine.summarize(intent.targets[0], intent.length, collection, should_stop=job.should_stop)
    else:
        events = engine.compare(*intent.targets, collection=collection, should_stop=job.should_stop)
    result = None
    for event in events:
        if isinstance(event, (Summary, Comparison)):
            result = event
            if not event.final:
                # The extract (or the differences) at once, in the window, while the model
                # reads: it stands on its own, and Stop keeps it.
                message = summary_message(event) if isinstance(event, Summary) else comparison_message(event)
                yield {"kind": "preview", "answer": message}
                yield ""  # the worker sends a value on when the next one comes: this sends it now
        elif isinstance(event, PartProgress):
            # "reading part 3 of 12", with the time it expects to need: the chat shows it.
            yield {"kind": "progress", **event.to_json()}
            yield ""
        else:
            yield event
    yield summary_message(result) if isinstance(result, Summary) else comparison_message(result)


def conversations(engine, job) -> list[dict]:
    return [dataclasses.asdict(row) for row in engine.conversations.list()]


def create_conversation(collection: str):
    return partial(_create_conversation, collection)


def _create_conversation(collection, engine, job) -> int:
    # By name: the first positional parameter is the title, which the first question sets.
    return engine.conversations.create(collection=collection)


def rename_conversation(conversation: int, title: str):
    return partial(_conversations, "rename", conversation, title)


def delete_conversation(conversation: int):
    return partial(_conversations, "delete", conversation)


def _conversations(method: str, *args):
    *args, engine, _job = args
    return getattr(engine.conversations, method)(*args)


def messages(conversation: int):
    return partial(_messages, conversation)


def _messages(conversation, engine, job) -> list[dict]:
    return [dataclasses.asdict(m) for m in engine.conversations.messages(conversation)]


def export_conversation(conversation: int, target: str):
    return partial(_export_conversation, conversation, target)


def _export_conversation(conversation, target, engine, job) -> str:
    Path(target).write_text(engine.conversations.export_markdown(conversation), encoding="utf-8")
    return target


def apply_settings(new, data_dir, reload: bool, reindex: bool):
    """Save the settings; reload the model or rebuild the index when they need it."""
    return partial(_apply_settings, new, str(data_dir), reload, reindex)


def _apply_settings(new, data_dir, reload, reindex, engine, job):
    new.save(Path(data_dir))
    if reindex:
        engine = job.rebuild_engine()  # a new engine reads the new settings (embedder too)
        for name in engine.collections():
            paths = [d.path for d in engine.documents(name) if Path(d.path).exists()]
            if paths:
                engine.remove(paths, name)
                yield from engine.index(paths, name, should_stop=job.should_stop)
    else:
        if engine.settings.team != new.team:
            engine.reset_team()
        engine.settings = new
        if reload:
            engine.use_model(None)
    info = engine.load_model() if (reload or reindex) else None
    freeze_heap()
    yield {"model": info}


def test_team(team):
    """Reach the team servers named in (unsaved) settings: where they are and what this role sees."""
    return partial(_test_team, team)


def _test_team(team, engine, job) -> dict:
    from rag.index.team import open_team_index

    index = open_team_index(team)
    try:
        return index.test_connection()
    finally:
        index.close()


def _title(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= 60 else line[:57] + "…"


def interrupt_model(engine) -> bool:
    """From a thread other than the engine's owner: end the model host an answer waits on.

    A host that stopped answering (frozen, stuck in a driver) never reads a stop request. Its
    socket closes when it ends, so the owner's read returns at once, as after a crash, and
    the model client starts a new host for the next question. Only a model already built is
    touched: building one is the owner thread's business.
    """
    model = getattr(engine, "_chat_model", None)
    end_host = getattr(model, "end_host", None)
    return bool(end_host()) if end_host is not None else False


def page_words(chunk_id: str):
    """The cited page's words and boxes when OCR read it (None otherwise). A partial, not a
    lambda: the engine process receives its jobs pickled."""
    return partial(_call, "page_words", chunk_id)
