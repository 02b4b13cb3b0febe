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
