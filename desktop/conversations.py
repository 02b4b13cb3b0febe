"""The list of past conversations: new, rename, delete, export to Markdown."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout, QInputDialog, QLabel, QListWidget, QListWidgetItem, QMessageBox, QPushButton,
    QVBoxLayout, QWidget,
)



class ConversationListWidget(QWidget):
    conversation_selected = Signal(int)
    new_requested = Signal()
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    export_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setAccessibleName("Conversations")
        self.list.currentItemChanged.connect(self._on_current_changed)
        buttons = QHBoxLayout()
        for text, tip, slot in (
            ("New", "Start a new conversation (Ctrl+N)", lambda: self.new_requested.emit()),
            ("Rename", "Rename the conversation", self._on_rename_clicked),
            ("Delete", "Delete the conversation", self._on_delete_clicked),
            ("Export…", "Export the conversation to Markdown (Ctrl+E)", self._on_export_clicked),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.setAccessibleName(tip.split(" (")[0])
            button.clicked.connect(slot)
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        title = QLabel("Conversations")
        title.setProperty("heading", True)  # style.py: small, muted, semibold
        layout.addWidget(title)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def set_conversations(self, rows: list[dict], current: int | None) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for row in rows:
            item = QListWidgetItem(row["title"])
            item.setData(Qt.UserRole, row["id"])
            item.setToolTip(f"Collection: {row['collection']}")
            self.list.addItem(item)
            if row["id"] == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def select_conversation(self, current: int | None) -> None:
        """Select `current` again without announcing it (a change the window refused)."""
        self.list.blockSignals(True)
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.UserRole) == current:
                self.list.setCurrentItem(item)
                break
        else:
            self.list.setCurrentItem(None)
        self.list.blockSignals(False)

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item else None

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_changed(self, current, _previous) -> None:
        if current is not None:
            self.conversation_selected.emit(current.data(Qt.UserRole))

    @Slot()
    def _on_rename_clicked(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=item.text())
        if ok and title.strip():
            self.rename_requested.emit(item.data(Qt.UserRole), title.strip())

    @Slot()
    def _on_delete_clicked(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        if QMessageBox.question(self, "Delete conversation", f"Delete {item.text()!r}?") == QMessageBox.Yes:
            self.delete_requested.emit(item.data(Qt.UserRole))

    @Slot()
    def _on_export_clicked(self) -> None:
        conversation = self.current_id()
        if conversation is not None:
            self.export_requested.emit(conversation)
