"""#21: a conversation belongs to one collection. Questions asked in "default" were appended
to the Welcome conversation, and a new conversation was titled "default"."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop import jobs


def stored_conversation(question: str, reply: str, collection: str):
    """A job: a past conversation of `collection`, as asking leaves it (without the model)."""

    def run(engine, job) -> int:
        if collection not in engine.collections():
            engine.create_collection(collection)
        store = engine.conversations
        conversation = store.create(title=question, collection=collection)
        store.add_message(conversation, "user", question)
        store.add_message(conversation, "assistant", reply,
                          {"answer": reply, "refused": False, "sources": [], "question": question})
        return conversation
    return run


def select_collection(qtbot, window, name: str) -> None:
    """What a click on the collection in the library does."""
    listing = window.library.collections
    qtbot.waitUntil(lambda: bool(listing.findItems(name, Qt.MatchExactly)),
                    timeout=10_000)
    listing.setCurrentItem(listing.findItems(name, Qt.MatchExactly)[0])


def test_each_collection_shows_its_own_conversation_and_questions_stay_in_it(qtbot, window):
    made = []
    window.client.run(stored_conversation("How do I add documents?", "Drop them on the window.", "Guide"),
                      on_result=made.append)
    window.client.run(stored_conversation("How many ducks?", "Eighty ducks.", "default"), on_result=made.append)
    qtbot.waitUntil(lambda: len(made) == 2, timeout=30_000)
    guide, ducks = made
    window._refresh_library()
    window._refresh_conversations()
    qtbot.waitUntil(lambda: window.conversations.list.count() == 2, timeout=10_000)
    chat = window.chat.view

    select_collection(qtbot, window, "Guide")
    qtbot.waitUntil(lambda: "Drop them on the window." in chat.toPlainText(), timeout=10_000)
    assert window._conversation == guide and window.conversations.current_id() == guide
    select_collection(qtbot, window, "default")
    qtbot.waitUntil(lambda: "Eighty ducks." in chat.toPlainText(), timeout=10_000)
    assert "Drop them on the window." not in chat.toPlainText()
    assert window._conversation == ducks

    # opening a conversation from the list asks its follow-ups in its own collection
    listing = window.conversations.list
    listing.setCurrentRow(next(r for r in range(listing.count()) if listing.item(r).data(Qt.UserRole) == guide))
    qtbot.waitUntil(lambda: window.library.current_collection() == "Guide", timeout=10_000)
    assert window._collection == "Guide"

    # a collection with no conversation yet: an empty chat, and the first question starts one
    # there, titled by the question (not appended to Guide's conversation)
    window._library_change(jobs.create_collection("Empty"), select="Empty")
    qtbot.waitUntil(lambda: window._collection == "Empty", timeout=10_000)
    qtbot.waitUntil(lambda: chat.toPlainText() == "", timeout=10_000)
    assert window._conversation is None
    with qtbot.waitSignal(window.answer_finished, timeout=120_000):
        window.ask("Where is the lighthouse?")
    qtbot.waitUntil(lambda: listing.count() == 3, timeout=10_000)
    rows = {r["id"]: r for r in window._conversation_rows}
    new = window._conversation
    assert new not in (guide, ducks)
    assert (rows[new]["title"], rows[new]["collection"]) == ("Where is the lighthouse?", "Empty")
    stored = []
    window.client.run(jobs.messages(guide), on_result=stored.append)
    qtbot.waitUntil(lambda: bool(stored), timeout=10_000)
    assert [m["text"] for m in stored[0]] == ["How do I add documents?", "Drop them on the window."]

    # New conversation: titled by its first question, never by the collection's name
    window._on_new_conversation_requested()
    qtbot.waitUntil(lambda: listing.count() == 4, timeout=10_000)
    assert "Empty" not in [listing.item(r).text() for r in range(listing.count())]


def test_a_question_asked_in_another_collection_never_joins_the_conversation(qtbot, window):
    """The engine's side: the conversation id given belongs to another collection, so the
    answer starts a new conversation (its turns would join a follow-up's search)."""
    made = []
    window.client.run(stored_conversation("How do I add documents?", "Drop them on the window.", "Guide"),
                      on_result=made.append)
    qtbot.waitUntil(lambda: bool(made), timeout=30_000)
    results = []
    window.client.run(jobs.ask("Where is the lighthouse?", "default", made[0]), on_result=results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=120_000)
    assert results[0]["conversation"] != made[0]
    stored = []
    window.client.run(jobs.messages(made[0]), on_result=stored.append)
    qtbot.waitUntil(lambda: bool(stored), timeout=10_000)
    assert len(stored[0]) == 2
