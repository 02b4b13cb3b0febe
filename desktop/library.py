"""The library panel: collections, the documents in the selected one, and their actions."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QAction, QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit, QListWidget,
    QMessageBox, QPushButton, QTableView, QTextBrowser, QVBoxLayout, QWidget,
)

from rag.ingest.loaders.registry import file_dialog_filter


STATE_LABELS = {
    "indexed": "Indexed", "indexing": "Indexing…", "queued": "Queued", "unchanged": "Unchanged",
    "skipped": "Skipped", "failed": "Failed", "stale": "Needs re-index",
}
# (on a light background, on a dark one): each reads at 4.5:1 or more on plain and alternate rows
STATE_COLORS = {"failed": (QColor("#c62828"), QColor("#ff8a80")), "skipped": (QColor("#8a5d00"), QColor("#ffcc66")),
                "stale": (QColor("#8a5d00"), QColor("#ffcc66"))}


def state_color(state: str) -> QColor | None:
    colors = STATE_COLORS.get(state)
    if colors is None:
        return None
    return colors[QGuiApplication.palette().color(QPalette.Base).lightness() < 128]


PASSWORD_HINT = "Double-click the document (or select it and press Enter) to give its password."


def needs_password(state: str, reason: str | None) -> bool:
    return state == "failed" and (reason or "").startswith("password required")


def state_label(state: str, reason: str | None) -> str:
    if needs_password(state, reason):
        return "Password required"
    return STATE_LABELS.get(state, state.capitalize())


def shown_reason(state: str, reason: str | None) -> str | None:
    """The reason as the window words it: the engine's password advice names the CLI's flag."""
    if needs_password(state, reason):
        return reason.split(": give its password with", 1)[0] + ". " + PASSWORD_HINT
    return reason


class DocumentTableModel(QAbstractTableModel):
    """Rows: {path, state, reason, pages, chunks}; columns: name, state, pages, chunks."""

    HEADERS = ("Document", "State", "Pages", "Chunks")
    PathRole = Qt.UserRole + 1

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[dict] = []
        self._busy: dict[str, str] = {}  # path -> "indexing"/"queued" while a job runs

    def set_documents(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        known = {r["path"] for r in self._rows}
        for path, state in self._busy.items():
            if path not in known:
                self._rows.append({"path": path, "state": state, "reason": None, "pages": None, "chunks": 0})
        self._rows.sort(key=lambda r: Path(r["path"]).name.lower())
        self.endResetModel()

    def set_busy(self, path: str | None) -> None:
        """Mark the file being indexed (None: nothing)."""
        self._busy = {path: "indexing"} if path else {}
        if path and path not in self.paths():
            self.set_documents([r for r in self._rows if r["state"] != "indexing"])
            return
        for row_number, row in enumerate(self._rows):
            if row["path"] == path and row["state"] != "indexed":
                row["state"] = "indexing"
                self.dataChanged.emit(self.index(row_number, 0), self.index(row_number, 3))

    def document(self, row: int) -> dict:
        return self._rows[row]

    def paths(self) -> list[str]:
        return [r["path"] for r in self._rows]

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.DisplayRole:
            if column == 0:
                return Path(row["path"]).name
            if column == 1:
                return state_label(row["state"], row.get("reason"))
            if column == 2:
                return "" if row.get("pages") is None else str(row["pages"])
            return str(row.get("chunks") or 0)
        if role == Qt.ToolTipRole:
            tip = row["path"]
            if row.get("reason"):
                tip += "\n" + shown_reason(row["state"], row["reason"])
            return tip
        if role == Qt.ForegroundRole and column == 1:
            return state_color(row["state"])
        if role == Qt.TextAlignmentRole and column >= 2:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == self.PathRole:
            return row["path"]
        return None


class LibraryWidget(QWidget):
    """Collections on top, documents below, a details view for the selected document."""

    collection_selected = Signal(str)
    collection_create_requested = Signal(str)
    collection_rename_requested = Signal(str, str)
    collection_delete_requested = Signal(str)
    files_chosen = Signal(list)
    folder_chosen = Signal(str)
    removal_requested = Signal(list)
    reindex_requested = Signal(list)
    password_given = Signal(str, str)  # path, password
    task_requested = Signal(str)  # a chat message for a whole-document task: "summarize PATH"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.collections = QListWidget()
        self.collections.setObjectName("collectionList")
        self.collections.setAccessibleName("Collections")
        self.collections.currentTextChanged.connect(self._on_collection_changed)

        new_button = self._button("New", "Create a collection", self._on_new_collection)
        rename_button = self._button("Rename", "Rename the selected collection", self._on_rename_collection)
        delete_button = self._button("Delete", "Delete the selected collection and forget its documents",
                                     self._on_delete_collection)

        self.model = DocumentTableModel(self)
        self.table = QTableView()
        self.table.setObjectName("documentList")
        self.table.setAccessibleName("Documents in the collection")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeToContents)
        self.table.selectionModel().currentRowChanged.connect(self._on_document_changed)
        self.table.activated.connect(self._on_document_activated)  # a double-click, or Enter
        # Right-click: whole-document tasks, asked in the chat as a person would type them.
        self.table.setContextMenuPolicy(Qt.ActionsContextMenu)
        for label, slot in (("Summarize", self._on_summarize), ("Compare the two selected", self._on_compare)):
            act = QAction(label, self.table)
            act.triggered.connect(slot)
            self.table.addAction(act)

        self.add_files_button = self._button("Add files…", "Add files to the collection (Ctrl+O)", self._on_add_files)
        self.add_files_button.setObjectName("addFilesButton")
        self.add_folder_button = self._button("Add folder…", "Add a folder and watch it (Ctrl+Shift+O)",
                                              self._on_add_folder)
        self.add_folder_button.setObjectName("addFolderButton")
        remove_button = self._button("Remove", "Forget the selected documents (Delete)", self._on_remove)
        reindex_button = self._button("Re-index", "Index the selected documents again (F5)", self._on_reindex)

        self.details = QTextBrowser()
        self.details.setObjectName("documentDetails")
        self.details.setAccessibleName("Document details")
        self.details.setMaximumHeight(110)
        self.details.setPlaceholderText("Select a document to see its details.")
        self.table.setToolTip("Double-click a password-protected PDF, or press Enter on it, to give its password.")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(_heading("Collections"))
        layout.addWidget(self.collections, 1)
        layout.addLayout(_row(new_button, rename_button, delete_button))
        layout.addWidget(_heading("Documents"))
        layout.addWidget(self.table, 4)
        layout.addLayout(_row(self.add_files_button, self.add_folder_button))
        layout.addLayout(_row(remove_button, reindex_button))
        layout.addWidget(self.details)

    def _button(self, text, tip, slot) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.setAccessibleName(tip.split(" (")[0])
        button.clicked.connect(slot)
        return button

    # --- state from the window -----------------------------------------------------------

    def current_collection(self) -> str:
        item = self.collections.currentItem()
        return item.text() if item else "default"

    def set_collections(self, names: list[str], current: str | None = None) -> None:
        current = current or self.current_collection()
        self.collections.blockSignals(True)
        self.collections.clear()
        self.collections.addItems(names)
        matches = self.collections.findItems(current, Qt.MatchExactly)
        self.collections.setCurrentItem(matches[0] if matches else self.collections.item(0))
        self.collections.blockSignals(False)
        if self.collections.currentItem() is not None:
            self.collection_selected.emit(self.collections.currentItem().text())

    def set_documents(self, rows: list[dict]) -> None:
        self.model.set_documents(rows)
        self._on_document_changed(self.table.currentIndex())

    def selected_paths(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.document(r)["path"] for r in rows]

    # --- slots -------------------------------------------------------------------------

    @Slot(str)
    def _on_collection_changed(self, name: str) -> None:
        if name:
            self.collection_selected.emit(name)

    @Slot(QModelIndex, QModelIndex)
    def _on_document_changed(self, current, _previous=None) -> None:
        if not current.isValid() or current.row() >= self.model.rowCount():
            self.details.clear()
            return
        doc = self.model.document(current.row())
        lines = [f"<b>{_escape(Path(doc['path']).name)}</b>", _escape(doc["path"]),
                 f"State: {state_label(doc['state'], doc.get('reason'))}"
                 f" · pages: {doc.get('pages') or '–'} · chunks: {doc.get('chunks') or 0}"]
        if doc.get("reason"):
            lines.append(f"Reason: {_escape(shown_reason(doc['state'], doc['reason']))}")
        self.details.setHtml("<br>".join(lines))

    @Slot(QModelIndex)
    def _on_document_activated(self, index) -> None:
        doc = self.model.document(index.row())
        if needs_password(doc["state"], doc.get("reason")):
            password, ok = QInputDialog.getText(self, "Password required",
                                                f"Password for {Path(doc['path']).name}:", QLineEdit.Password)
            if ok and password:
                self.password_given.emit(doc["path"], password)

    @Slot()
    def _on_new_collection(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name of the new collection:")
        if ok and name.strip():
            self.collection_create_requested.emit(name.strip())

    @Slot()
    def _on_rename_collection(self) -> None:
        old = self.current_collection()
        name, ok = QInputDialog.getText(self, "Rename collection", f"New name for {old!r}:", text=old)
        if ok and name.strip() and name.strip() != old:
            self.collection_rename_requested.emit(old, name.strip())

    @Slot()
    def _on_delete_collection(self) -> None:
        name = self.current_collection()
        answer = QMessageBox.question(
            self, "Delete collection",
            f"Delete the collection {name!r}? Its documents are forgotten by Enclave (the files stay on disk).")
        if answer == QMessageBox.Yes:
            self.collection_delete_requested.emit(name)

    @Slot()
    def _on_add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add files", os.path.expanduser("~"), file_dialog_filter())
        if paths:
            self.files_chosen.emit(paths)

    @Slot()
    def _on_add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder (it will be watched)", os.path.expanduser("~"))
        if folder:
            self.folder_chosen.emit(folder)

    @Slot()
    def _on_remove(self) -> None:
        paths = self.selected_paths()
        if paths:
            self.removal_requested.emit(paths)

    @Slot()
    def _on_summarize(self) -> None:
        paths = self.selected_paths()
        if len(paths) == 1:
            self.task_requested.emit(f"summarize {paths[0]}")

    @Slot()
    def _on_compare(self) -> None:
        paths = self.selected_paths()
        if len(paths) == 2:
            self.task_requested.emit(f"compare {paths[0]} and {paths[1]}")

    @Slot()
    def _on_reindex(self) -> None:
        paths = self.selected_paths() or self.model.paths()
        if paths:
            self.reindex_requested.emit(paths)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _row(*widgets) -> QHBoxLayout:
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    return layout


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
