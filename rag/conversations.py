"""Conversations persisted in SQLite in the data folder, with numbered migrations."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import IndexDamaged

CONVERSATIONS_FILE = "conversations.sqlite3"
# Below a question whose answer never came (the engine was ended mid-answer: the window
# closed, or it stopped waiting for a frozen model), so reopening it does not show a
# question with nothing under it, and a follow-up's history leaves it out.
INTERRUPTED = "No answer: Enclave stopped before answering this question. Ask it again."

MIGRATIONS = [
    [
        """CREATE TABLE conversations (
               id INTEGER PRIMARY KEY, title TEXT NOT NULL, collection TEXT NOT NULL,
               created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
        """CREATE TABLE messages (
               id INTEGER PRIMARY KEY,
               conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
               role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
               text TEXT NOT NULL, answer TEXT, created_at REAL NOT NULL)""",
        "CREATE INDEX messages_conversation ON messages(conversation_id)",
    ],
]


@dataclass
class ConversationRow:
    id: int
    title: str
    collection: str
    created_at: float
    updated_at: float


@dataclass
class MessageRow:
    id: int
    role: str
    text: str
    answer: dict | None
    created_at: float


class ConversationStore:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / CONVERSATIONS_FILE
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                self.db.execute("BEGIN IMMEDIATE")
                for statement in MIGRATIONS[number]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")
                self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(f"The conversation history {self.path} is damaged ({exc}).") from exc
        os.chmod(self.path, 0o600)

    def create(self, title: str = "New conversation", collection: str = "default") -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO conversations(title, collection, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (title, collection, now, now),
        )
        return int(cur.lastrowid)

    def list(self) -> list[ConversationRow]:
        rows = self.db.execute(
            "SELECT id, title, collection, created_at, updated_at FROM conversations ORDER BY updated_at DESC, id DESC"
        )
        return [ConversationRow(*r) for r in rows]

    def get(self, conversation_id: int) -> ConversationRow | None:
        row = self.db.execute(
            "SELECT id, title, collection, created_at, updated_at FROM conversations WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        return ConversationRow(*row) if row else None

    def rename(self, conversation_id: int, title: str) -> None:
        self.db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip() or "Untitled", conversation_id))

    def delete(self, conversation_id: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def add_message(self, conversation_id: int, role: str, text: str, answer: dict | None = None) -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO messages(conversation_id, role, text, answer, created_at) VALUES (?, ?, ?, ?, ?)",
            (conversation_id, role, text, json.dumps(answer) if answer is not None else None, now),
        )
        self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        return int(cur.lastrowid)

    def add_failure(self, conversation_id: int, question: str, reason: str) -> int:
        """The assistant's turn for a question that ended without an answer, saying why."""
        return self.add_message(conversation_id, "assistant", f"*{reason}*",
                                {"question": question, "failed": True, "reason": reason})

    def unanswered(self) -> list[tuple[int, str]]:
        """(conversation id, question) of every conversation that ends in a question."""
        return self.db.execute(
            "SELECT m.conversation_id, m.text FROM messages m WHERE m.role = 'user' AND m.id = "
            "(SELECT max(id) FROM messages WHERE conversation_id = m.conversation_id)").fetchall()

    def close_unanswered(self) -> int:
        """Give every conversation that ends in a question a failed turn (INTERRUPTED).
        Only for the data folder's writer, when no answer of its own is under way; returns
        how many."""
        rows = self.unanswered()
        for conversation_id, question in rows:
            self.add_failure(conversation_id, question, INTERRUPTED)
        return len(rows)

    def messages(self, conversation_id: int) -> list[MessageRow]:
        rows = self.db.execute(
            "SELECT id, role, text, answer, created_at FROM messages WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        )
        return [MessageRow(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, r[4]) for r in rows]

    def history(self, conversation_id: int, turns: int = 4) -> list[tuple[str, str]]:
        """The last (question, answer) pairs, oldest first; refusals are left out."""
        pairs, question = [], None
        for m in self.messages(conversation_id):
            if m.role == "user":
                question = m.text
            elif question is not None:
                if not ((m.answer or {}).get("refused") or (m.answer or {}).get("failed")):
                    pairs.append((question, m.text))
                question = None
        return pairs[-turns:]

    def forget_document(self, path: str) -> int:
        """Blank a forgotten document's snippets in stored answers; returns messages changed."""
        changed = 0
        rows = self.db.execute("SELECT id, answer FROM messages WHERE answer LIKE ?", (f"%{json.dumps(path)[1:-1]}%",))
        for message_id, raw in rows.fetchall():
            answer = json.loads(raw)
            touched = False
            for source in answer.get("sources", []):
                if source.get("path") == path:
                    source.update(text="", support=None, removed=True)
                    touched = True
            if touched:
                self.db.execute("UPDATE messages SET answer = ? WHERE id = ?", (json.dumps(answer), message_id))
                changed += 1
        return changed

    def export_markdown(self, conversation_id: int) -> str:
        conversation = self.get(conversation_id)
        if conversation is None:
            raise KeyError(conversation_id)
        lines = [f"# {conversation.title}", "", f"Collection: {conversation.collection}", ""]
        for m in self.messages(conversation_id):
            if m.role == "user":
                lines += [f"**You:** {m.text}", ""]
                continue
            lines += [f"**Enclave:** {m.text}", ""]
            sources = (m.answer or {}).get("sources", [])
            if sources:
                lines.append("Sources:")
                for s in sources:
                    page = f", page {s['page']}" if s.get("page") else ""
                    lines.append(f"- [{s['n']}] {s['path']}{page}")
                    quote = ((s.get("support") or {}).get("text") or "").strip()
                    if quote:
                        lines.append(f"  > {' '.join(quote.split())}")
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def close(self) -> None:
        self.db.close()
