"""The Models page: the catalog and imported files with their fit on this machine; download
(progress, bytes/s, ETA, cancel), import, and "use this model".

Downloads, imports and the checks before a switch run on a `TaskThread`, never on the UI
thread: a 5 GB download or hash takes minutes. The page talks to them by signals only. The
switch itself is the main window's: it saves the settings and reloads the model through the
engine worker, like Settings does.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from PySide6.QtCore import QThread, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout,
)

from rag.config import Settings
from rag.errors import EnclaveError
from rag.models.download import DownloadCancelled
from rag.models.fit import WONT_FIT
from rag.models.store import ModelStore, Row

log = logging.getLogger(__name__)
GENERIC_FAILURE = "Something went wrong inside Enclave. The details are in the log."
DEFAULT_REFUSAL = Settings().model_refusal_probability


class TaskThread(QThread):
    """Runs `fn(report, cancelled)` off the UI thread; `report(obj)` becomes `progressed`."""

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, fn, parent=None):
        super().__init__(parent)
        self._fn = fn
        self._stop = threading.Event()
        self.outcome = ""  # "done", "cancelled" or "failed", once finished

    def cancel(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            value = self._fn(self.progressed.emit, self._stop.is_set)
        except DownloadCancelled as exc:
            self.outcome = "cancelled"
            self.failed.emit(str(exc))
        except EnclaveError as exc:
            self.outcome = "failed"
            self.failed.emit(str(exc))
        except Exception:  # noqa: BLE001 - a bug: its traceback goes to the log, the page says so plainly
            log.exception("model task failed")
            self.outcome = "failed"
            self.failed.emit(GENERIC_FAILURE)
        else:
            self.outcome = "done"
            self.succeeded.emit(value)


class ModelsDialog(QDialog):
    settings_chosen = Signal(object)  # Settings with the chosen model; the window applies them
    task_finished = Signal(str)  # "done", "cancelled" or "failed"

    def __init__(self, settings: Settings, data_dir: str, parent=None, store: ModelStore | None = None):
        super().__init__(parent)
        self.setObjectName("modelsDialog")
        self.setWindowTitle("Models")
        self.setAcceptDrops(True)  # a GGUF dropped here is imported
        self._settings = settings
        self.store = store or ModelStore(data_dir)
        self._rows: list[Row] = []
        self._task: TaskThread | None = None

        self.table = QTableWidget(0, 4)
        self.table.setObjectName("modelTable")
        self.table.setAccessibleName("Models: the catalog and your own files")
        self.table.setHorizontalHeaderLabels(["Model", "Size", "On this machine", "Status"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)

        self.details = QLabel()
        self.details.setObjectName("modelDetails")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.setRange(0, 1000)
        self.progress.hide()
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        self.status.setWordWrap(True)

        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadModel")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setObjectName("cancelDownload")
        self.cancel_button.setEnabled(False)
        self.import_button = QPushButton("Import file…")
        self.import_button.setObjectName("importModel")
        self.import_button.setToolTip("A GGUF file from this disk, a share or a USB stick; you can also drop it here.")
        self.use_button = QPushButton("Use this model")
        self.use_button.setObjectName("useModel")
        close = QPushButton("Close")
        self.download_button.clicked.connect(self._on_download_clicked)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.use_button.clicked.connect(self._on_use_clicked)
        close.clicked.connect(self.close)

        policy = self.store.policy
        self.policy_note = QLabel(
            f"Your administrator's policy applies ({policy.path})." if policy.path else "")
        self.policy_note.setObjectName("modelPolicy")
        self.policy_note.setWordWrap(True)
        if not policy.allow_downloads:
            self.download_button.setToolTip(f"Downloads are turned off by your administrator ({policy.path}).")

        buttons = QHBoxLayout()
        for button in (self.download_button, self.cancel_button, self.import_button, self.use_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.policy_note)
        layout.addLayout(buttons)
        self.resize(820, 520)
        self.refresh()

    # --- the list ---------------------------------------------------------------------------

    def refresh(self, select: str | None = None) -> None:
        """Re-read the models folder and this machine's free memory (milliseconds: headers only)."""
        current = select or (self.selected().name if self.selected() else None)
        self.store.forget_machine()
        self._rows = self.store.rows(self._settings.context_size)
        try:
            in_use = str(self._settings.llm_model_path())
        except EnclaveError:
            in_use = ""
        self.table.setRowCount(len(self._rows))
        for index, row in enumerate(self._rows):
            status = "in use" if row.path and row.path == in_use else ("downloaded" if row.installed else "")
            if row.source == "bundled":
                status = status or "bundled"
            if not row.allowed:
                status = "not allowed by your administrator"
            cells = [row.title, f"{row.size / 1e9:.2f} GB", row.fit.label, status]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, row.name)
                if column == 2:
                    item.setToolTip(row.fit.reason)
                self.table.setItem(index, column, item)
        names = [row.name for row in self._rows]
        self.table.selectRow(names.index(current) if current in names else 0)
        self._on_selection_changed()

    @property
    def busy(self) -> bool:
        """A download or an import is running."""
        return self._task is not None

    def selected(self) -> Row | None:
        items = self.table.selectedItems()
        if not items:
            return None
        name = items[0].data(Qt.UserRole)
        return next((row for row in self._rows if row.name == name), None)

    def select(self, name: str) -> None:
        names = [row.name for row in self._rows]
        self.table.selectRow(names.index(name))

    def fit_labels(self) -> dict[str, str]:
        return {self.table.item(i, 0).data(Qt.UserRole): self.table.item(i, 2).text()
                for i in range(self.table.rowCount())}

    @Slot()
    def _on_selection_changed(self) -> None:
        row = self.selected()
        busy = self._task is not None
        if row is None:
            self.details.setText("")
            return
        e = row.entry
        parts = []
        if e is not None:
            parts.append(f"<b>{e.title}</b>: {e.parameters} parameters, {e.quant}, {e.license}; "
                         f"trained context {e.context:,} tokens; languages {', '.join(e.languages) or '—'}.")
            if e.hardware:
                parts.append(f"Recommended: {e.hardware}.")
            if e.eval_f1 is not None:
                parts.append(f"Enclave's own measure: answer F1 {e.eval_f1:.3f} on 100 public questions.")
            refusal = e.refusal_probability if e.refusal_probability is not None else DEFAULT_REFUSAL
            parts.append(f"Refusal cut: {refusal:g}{'' if e.refusal_probability is not None else ' (the default)'}.")
        else:
            parts.append(f"<b>{row.title}</b>: imported from your own file.")
        parts.append(f"On this machine: {row.fit.label} ({row.fit.reason}).")
        if row.installed:
            parts.append("Chat template: the one stored in the file.")
        self.details.setText(" ".join(parts))
        downloadable = row.source == "catalog" and not row.installed and row.allowed
        self.download_button.setEnabled(downloadable and not busy and self.store.policy.allow_downloads)
        self.use_button.setEnabled(row.installed and row.allowed and row.fit.code != WONT_FIT and not busy)
        self.import_button.setEnabled(not busy)

    # --- tasks off the UI thread ----------------------------------------------------------------

    def _start(self, fn, on_success, what: str) -> TaskThread:
        task = TaskThread(fn, self)
        task.progressed.connect(self._on_progressed)
        task.succeeded.connect(on_success)
        task.failed.connect(self._on_task_failed)
        task.finished.connect(self._on_task_finished)
        self._task = task
        self.status.setText(what)
        self.cancel_button.setEnabled(True)
        self._on_selection_changed()
        task.start()
        return task

    @Slot()
    def _on_download_clicked(self) -> None:
        row = self.selected()
        if row is None or self._task is not None:
            return
        name = row.name
        self.progress.setValue(0)
        self.progress.show()
        self._start(lambda report, cancelled: self.store.pull(name, on_progress=report, cancelled=cancelled),
                    lambda pulled: self._on_downloaded(name, pulled), f"Connecting to download {row.title}…")

    @Slot(object)
    def _on_progressed(self, p) -> None:
        if not getattr(p, "total", 0):
            return
        self.progress.setValue(int(1000 * p.done / p.total))
        eta = f", about {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        self.status.setText(f"{p.done / 1e6:,.1f} of {p.total / 1e6:,.1f} MB, {p.bytes_per_s / 1e6:.1f} MB/s{eta}")

    def _on_downloaded(self, name: str, pulled) -> None:
        self.status.setText(f"Downloaded and verified (SHA-256 {pulled.sha256[:12]}…).")
        self.refresh(select=name)

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling… (what was downloaded is kept for next time)")

    @Slot(str)
    def _on_task_failed(self, message: str) -> None:
        self.status.setText(message)

    @Slot()
    def _on_task_finished(self) -> None:
        task, self._task = self._task, None
        self.cancel_button.setEnabled(False)
        self.progress.hide()
        self._on_selection_changed()
        if task is not None:
            task.deleteLater()
            self.task_finished.emit(task.outcome)

    @Slot()
    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        if self._task is not None:
            self.status.setText("Wait for the current download or import to finish.")
            return
        self._start(lambda report, cancelled: self.store.import_file(path),
                    lambda item: (self.status.setText(f"Imported {item.file} (SHA-256 {item.sha256[:12]}…)."),
                                  self.refresh(select=item.name)),
                    f"Checking and copying {Path(path).name}…")

    @Slot()
    def _on_use_clicked(self) -> None:
        row = self.selected()
        if row is None or self._task is not None:
            return
        n_ctx, name = self._settings.context_size, row.name

        def check(report, cancelled):
            path, entry = self.store.resolve(name)
            fit = self.store.check_usable(path, n_ctx, entry.title if entry else path.name)
            return path, entry, fit

        self._start(check, self._on_use_checked, f"Checking {row.title}…")

    def _on_use_checked(self, checked) -> None:
        path, entry, fit = checked
        bundled = entry is not None and entry.bundled and not self.store.policy.default_model
        changes = {"llm_model": "" if bundled else str(path),
                   "gpu_layers": fit.gpu_layers}
        # The refusal cut measured for this model, else the general default (not the last model's).
        measured = entry.refusal_probability if entry is not None else None
        changes["model_refusal_probability"] = measured if measured is not None else DEFAULT_REFUSAL
        new = dataclasses.replace(self._settings, **changes)
        self._settings = new
        self.status.setText(f"Switching to {path.name}: {fit.label}. The model loads in the background.")
        self.settings_chosen.emit(new)
        self.refresh()

    # --- drops and closing ------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.toLocalFile().lower().endswith(".gguf") for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.import_path(urls[0].toLocalFile())
            event.acceptProposedAction()

    def shutdown(self) -> None:
        """At the window's close: stop a download at its next chunk (its part file is kept,
        and the next pull resumes) and wait for the thread. Closing only the page does not
        stop it: the page is hidden and the download goes on, as in a browser."""
        if self._task is not None:
            self._task.cancel()
            self._task.wait(60_000)
