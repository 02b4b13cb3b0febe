"""The library panel: collections, the documents in the selected one, and their actions."""

from __future__ import annotations

import os
import re
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
        self._catalog: list[dict] = []  # the rows as the engine last listed them
        # While a run goes on, every file of it: path -> {"state", "reason", "detail"}; shown
        # over the catalog's row (or as a row of its own before the catalog has one).
        self._run: dict[str, dict] = {}
        self._where: dict[str, int] = {}  # path -> row

    def set_documents(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self._catalog = list(rows)
        self._rows = [dict(r, **self._run[r["path"]]) if r["path"] in self._run else r for r in rows]
        known = {r["path"] for r in self._rows}
        for path, run in self._run.items():
            if path not in known:
                self._rows.append({"path": path, "pages": None, "chunks": 0, **run})
        self._rows.sort(key=lambda r: Path(r["path"]).name.lower())
        self._where = {r["path"]: i for i, r in enumerate(self._rows)}
        self.endResetModel()

    def track(self, event) -> None:
        """An indexing run's progress (rag.types.Progress): its files are listed as queued at
        its start, then each shows indexing (with how far, in a long scan), and indexed,
        unchanged, skipped or failed with its reason as it finishes."""
        if event.files:
            for path in event.files:
                self._run[path] = {"state": "queued", "reason": None, "detail": ""}
            self.set_documents(self._catalog)
            return
        if not event.current:
            return
        path = event.current
        if event.outcome and event.outcome["state"] == "unchanged":
            run = self._run.pop(path, None)  # the catalog's row says it all
            catalog = next((r for r in self._catalog if r["path"] == path), None)
            if run is None or catalog is None:
                return
            update = {k: catalog.get(k) for k in ("state", "reason")} | {"detail": ""}
        elif event.outcome:
            update = self._run[path] = {"state": event.outcome["state"], "reason": event.outcome.get("reason"),
                                        "detail": ""}
        else:
            update = self._run[path] = {"state": "indexing", "reason": None, "detail": event.detail or ""}
        row = self._where.get(path)
        if row is None:
            self.set_documents(self._catalog)  # not listed yet (a file the run found late)
            return
        # One row changes: a whole reset per file made the window fall behind a fast run.
        self._rows[row].update(update)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.HEADERS) - 1))

    def end_run(self) -> None:
        """The run ended (or was cancelled): files it did not reach are not listed any more."""
        self._run = {}
        self.set_documents(self._catalog)

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
                label = state_label(row["state"], row.get("reason"))
                share = _share(row.get("detail", "")) if row["state"] == "indexing" else None
                return f"{label} {share}%" if share is not None else label
            if column == 2:
                return "" if row.get("pages") is None else str(row["pages"])
            return str(row.get("chunks") or 0)
        if role == Qt.ToolTipRole:
            tip = row["path"]
            if row.get("detail"):
                tip += "\n" + row["detail"]
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
        # One line a document; the name takes the room and, when cut, keeps its start and its
        # extension ("quarterly-…-2024.pdf"); the tooltip has the full path.
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(36)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        # The narrow columns fit their texts as ResizeToContents would, but measured here: it
        # measured every row on every change, 0.3 s a file in a run of 150, so the window fell
        # seconds behind the engine and Pause or Cancel came too late. A reset measures every
        # row once; a changed row only widens its column when its own text needs it.
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.Fixed)
        self.model.modelReset.connect(self._fit_columns)
        self.model.dataChanged.connect(lambda first, last, *_: self._fit_columns(first.row(), last.row()))
        self._fit_columns()
        self.table.setColumnHidden(2, True)  # pages: in the details below; the name needs the room
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

    def _fit_columns(self, first: int | None = None, last: int | None = None) -> None:
        header, metrics = self.table.horizontalHeader(), self.table.fontMetrics()
        rows = range(self.model.rowCount()) if first is None else range(first, last + 1)
        for column in (1, 2, 3):
            texts = [self.model.HEADERS[column]] + [
                self.model.data(self.model.index(r, column)) or "" for r in rows]
            width = max(metrics.horizontalAdvance(t) for t in texts) + 12  # the cell's own margins
            if first is None or width > header.sectionSize(column):
                header.resizeSection(column, max(width, header.minimumSectionSize()))

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


def _share(detail: str) -> int | None:
    """How far a reader is inside a long file: "reading scanned page 3 of 40" is 7 %."""
    found = re.search(r"(\d+) of (\d+)", detail or "")
    if not found or int(found.group(2)) == 0:
        return None
    return min(99, int(100 * (int(found.group(1)) - 1) / int(found.group(2))))


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("heading", True)  # style.py: small, muted, semibold
    return label


def _row(*widgets) -> QHBoxLayout:
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    return layout


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
