import subprocess
import sys

from rag.conversations import ConversationStore


def test_conversations_persist_export_and_forget(tmp_path):
    store = ConversationStore(tmp_path)
    cid = store.create("Budget questions", "work")
    store.add_message(cid, "user", "What is the Lisbon budget?")
    answer = {"answer": "12,000 euros [1].", "refused": False,
              "sources": [{"n": 1, "path": "/d/memo.txt", "page": None, "text": "The budget is 12,000 euros.",
                           "support": {"start": 0, "end": 27, "text": "The budget is 12,000 euros."}}]}
    store.add_message(cid, "assistant", "12,000 euros [1].", answer)
    store.add_message(cid, "user", "Who cannot answer?")
    store.add_message(cid, "assistant", "I could not find it.", {"refused": True, "sources": []})
    store.close()

    store = ConversationStore(tmp_path)  # reopened: it persisted
    assert [c.title for c in store.list()] == ["Budget questions"]
    assert store.history(cid) == [("What is the Lisbon budget?", "12,000 euros [1].")]
    md = store.export_markdown(cid)
    assert md.startswith("# Budget questions") and "- [1] /d/memo.txt" in md and "> The budget is 12,000 euros." in md

    assert store.forget_document("/d/memo.txt") == 1
    source = store.messages(cid)[1].answer["sources"][0]
    assert source["removed"] and source["text"] == "" and source["support"] is None
    assert "12,000 euros." not in store.export_markdown(cid).split("Sources:")[1]

    store.rename(cid, "Renamed")
    assert store.get(cid).title == "Renamed"
    store.delete(cid)
    assert store.list() == [] and store.messages(cid) == []


def test_a_question_left_without_its_answer_gets_a_failed_turn_and_stays_out_of_the_history(tmp_path):
    from rag.conversations import INTERRUPTED

    store = ConversationStore(tmp_path)
    done, cut, failed = store.create("Done", "work"), store.create("Cut", "work"), store.create("Failed", "work")
    store.add_message(done, "user", "What is the budget?")
    store.add_message(done, "assistant", "12,000 euros [1].", {"refused": False, "sources": []})
    store.add_message(cut, "user", "What is the budget?")
    store.add_message(cut, "assistant", "12,000 euros [1].", {"refused": False, "sources": []})
    store.add_message(cut, "user", "And who approved it?")  # the engine was ended here
    store.add_message(failed, "user", "Why?")
    store.add_failure(failed, "Why?", "The model host stopped answering.")
    assert [m.text for m in store.messages(failed)] == ["Why?", "*The model host stopped answering.*"]
    assert store.messages(failed)[1].answer == {"question": "Why?", "failed": True,
                                                 "reason": "The model host stopped answering."}
    assert store.close_unanswered() == 1  # only the conversation that ends in a question
    assert store.close_unanswered() == 0
    turns = store.messages(cut)
    assert [m.role for m in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[-1].text == f"*{INTERRUPTED}*" and turns[-1].answer["failed"]
    assert len(store.messages(done)) == 2
    # A follow-up's history holds the answered turn only.
    store.add_message(cut, "user", "Who approved it?")
    assert store.history(cut) == [("What is the budget?", "12,000 euros [1].")]
    assert store.history(failed) == []
    store.close()


def test_an_engine_opening_the_history_closes_the_question_its_predecessor_left_open(tmp_path):
    from rag.conversations import INTERRUPTED
    from rag.engine import Engine
    from tests.fakes import HashEmbedder

    store = ConversationStore(tmp_path)
    cid = store.create("Cut", "default")
    store.add_message(cid, "user", "What is the budget?")  # the engine before was killed here
    store.close()
    engine = Engine(tmp_path, embedder=HashEmbedder())
    try:
        turns = engine.conversations.messages(cid)
        assert [(m.role, m.text) for m in turns] == [("user", "What is the budget?"), ("assistant", f"*{INTERRUPTED}*")]
    finally:
        engine.close()


def test_a_question_is_left_open_while_another_process_is_the_writer(tmp_path):
    """That process's answer may be under way: only the folder's writer closes a question."""
    from rag.engine import Engine
    from tests.fakes import HashEmbedder

    store = ConversationStore(tmp_path)
    cid = store.create("Open", "default")
    store.add_message(cid, "user", "What is the budget?")
    store.close()
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time; from rag.lock import WriterLock; "
                               "WriterLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        engine = Engine(tmp_path, embedder=HashEmbedder())
        try:
            assert [m.role for m in engine.conversations.messages(cid)] == ["user"]
            assert not engine.lock.held
        finally:
            engine.close()
    finally:
        writer.kill()
        writer.wait()
