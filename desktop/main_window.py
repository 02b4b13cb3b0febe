"""The main window composes the widgets and wires them to the engine worker. It does not think:
engine work is in jobs.py (run by the one worker), drawing is in the widgets."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget


from rag.config import Settings

from . import jobs
from .answers import AnswerQueue
from .chat import ChatWidget
from .client import EngineClient
from .conversations import ConversationListWidget
from .dropping import DropHintWidget, local_paths
from .library import LibraryWidget
from .messages import MessageBridge
from .progress import IndexProgressWidget
from .models_dialog import ModelsDialog
from .settings_dialog import SettingsDialog, what_changes
from .source_viewer import SourceViewerWidget
from .status import StatusBarWidget
from .theme import app_icon
from .watcher import FolderWatcher
from .words import counted
from .workers import EngineWorker

APP_NAME = "Enclave"
LIBRARY_REFRESH_MS = 1500
COUNTS_REFRESH_MS = 300


class MainWindow(QMainWindow):
    answer_finished = Signal(dict)    # Answer.to_json(): the shape of `enclave-cli ask --json`
    answer_failed = Signal(str)       # a question ended without an answer; the message says why
    indexing_finished = Signal(dict)  # IndexReport.to_json(): the shape of `enclave-cli index --json`
    model_loaded = Signal(dict)       # Generator.info
    library_refreshed = Signal()

    def __init__(self, data_dir: Path, worker: EngineWorker, bridge: MessageBridge, welcome: bool = True):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.setWindowTitle(f"{APP_NAME} — private document assistant")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.bridge = bridge
        self.worker = worker
        self.client = EngineClient(worker, self)
        self.client.failed.connect(bridge.report)
        worker.data_damaged.connect(self._on_data_damaged)
        self._collection = jobs.DEFAULT_COLLECTION
        self._conversation: int | None = None
        self._conversation_rows: list[dict] = []  # as last listed: id, title, collection, newest first
        # Every question asked is answered in turn or ends with a message; none is dropped.
        self.answers = AnswerQueue(self.client, lambda: self._conversation, self._answer_stall_s, self)
        self._started = False
        self._user_indexed = False
        self._welcome = welcome

        self.library = LibraryWidget()
        self.conversations = ConversationListWidget()
        self.chat = ChatWidget()
        self.viewer = SourceViewerWidget()
        self.progress = IndexProgressWidget()
        self.status = StatusBarWidget()
        self.setStatusBar(self.status)
        self.watcher = FolderWatcher(self.data_dir, self)

        left = QSplitter(Qt.Vertical)
        left.addWidget(self.library)
        left.addWidget(self.conversations)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        for widget, stretch in ((left, 2), (self.chat, 4), (self.viewer, 4)):
            self.splitter.addWidget(widget)
            self.splitter.setStretchFactor(self.splitter.count() - 1, stretch)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.progress)
        self.setCentralWidget(central)
        self.drop_hint = DropHintWidget(central)

        self.models_dialog: ModelsDialog | None = None  # built on first use, kept for its downloads
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(LIBRARY_REFRESH_MS)
        self._refresh_timer.timeout.connect(self._on_refresh_tick)
        self._counts_timer = QTimer(self)  # files finishing in a burst: one listing for them
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(COUNTS_REFRESH_MS)
        self._counts_timer.timeout.connect(self._on_refresh_tick)

        self._wire()
        self._build_menus()
        self._restore_geometry()

    # --- composition -----------------------------------------------------------------------

    def _wire(self) -> None:
        lib = self.library
        lib.collection_selected.connect(self._on_collection_selected)
        lib.collection_create_requested.connect(
            lambda name: self._library_change(jobs.create_collection(name), select=name))
        lib.collection_rename_requested.connect(self._on_collection_rename_requested)
        lib.collection_delete_requested.connect(self._on_collection_delete_requested)
        lib.files_chosen.connect(self.add_paths)
        lib.folder_chosen.connect(lambda folder: self.add_paths([folder]))
        lib.removal_requested.connect(
            lambda paths: self._library_change(jobs.remove(paths, self._collection)))
        lib.reindex_requested.connect(lambda paths: self._index(paths, self._collection, force=True))
        lib.password_given.connect(lambda path, pw: self._index([path], self._collection, passwords=(pw,)))
        lib.task_requested.connect(self.ask)  # Summarize / Compare: answered in the chat like a question
        self.progress.pause_clicked.connect(lambda: self._for_index_jobs(self.worker.pause))
        self.progress.resume_clicked.connect(lambda: self._for_index_jobs(self.worker.resume))
        self.progress.cancel_clicked.connect(lambda: self._for_index_jobs(self.worker.cancel))
        self.chat.question_submitted.connect(self.ask)
        self.chat.stop_requested.connect(self._on_stop_requested)
        answers = self.answers
        answers.waiting.connect(self.chat.add_waiting)
        answers.started.connect(self.chat.begin_answer)
        answers.progressed.connect(self.chat.append_piece)
        answers.answered.connect(self._on_answer_result)
        answers.failed.connect(self._on_answer_failed)
        self.chat.citation_clicked.connect(self.show_source)
        self.chat.empty.add_files_requested.connect(self.library._on_add_files)
        self.chat.empty.add_folder_requested.connect(self.library._on_add_folder)
        self.chat.empty.example_requested.connect(self._on_example_requested)
        self.viewer.close_requested.connect(self.viewer.hide)
        conv = self.conversations
        conv.conversation_selected.connect(self._on_conversation_selected)
        conv.new_requested.connect(self._on_new_conversation_requested)
        conv.rename_requested.connect(
            lambda cid, title: self.client.run(jobs.rename_conversation(cid, title),
                                               on_finished=self._refresh_conversations))
        conv.delete_requested.connect(self._on_conversation_delete_requested)
        conv.export_requested.connect(self._on_export_requested)
        self.watcher.folder_changed.connect(self._on_watched_folder_changed)

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None):
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        action(file_menu, "Add &files…", self.library._on_add_files, QKeySequence.Open)
        action(file_menu, "Add f&older…", self.library._on_add_folder, "Ctrl+Shift+O")
        action(file_menu, "&Export conversation…", lambda: self._on_export_requested(self._conversation), "Ctrl+E")
        file_menu.addSeparator()
        action(file_menu, "&Settings…", self.open_settings, "Ctrl+,")
        action(file_menu, "&Models…", self.open_models, "Ctrl+Shift+M")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.Quit)
        library = bar.addMenu("&Library")
        action(library, "&New collection…", self.library._on_new_collection, "Ctrl+Shift+N")
        action(library, "&Rename collection…", self.library._on_rename_collection, "F2")
        action(library, "&Delete collection…", self.library._on_delete_collection)
        library.addSeparator()
        action(library, "Re&move documents", self.library._on_remove, QKeySequence.Delete)
        action(library, "Re-&index documents", self.library._on_reindex, "F5")
        chat = bar.addMenu("&Chat")
        action(chat, "&New conversation", self._on_new_conversation_requested, QKeySequence.New)
        action(chat, "&Ask", self.chat._on_send_clicked, "Ctrl+Return")
        action(chat, "&Stop answer", self._on_stop_requested, "Esc")
        action(chat, "&Focus the question", lambda: self.chat.input.setFocus(), "Ctrl+L")
        help_menu = bar.addMenu("&Help")
        action(help_menu, "&About Enclave", self._on_about)
        QShortcut(QKeySequence("Ctrl+Shift+F"), self, activated=self.library._on_add_folder)

    # --- startup --------------------------------------------------------------------------

    def start_background_work(self) -> None:
        """After the window shows: load the model, index the welcome guide, list the library."""
        if self._started:
            return
        self._started = True
        self._refresh_library()
        self._refresh_conversations(select_latest=True)
        self.client.run(jobs.load_model, name="load_model", on_result=self._on_model_loaded,
                        on_failed=self._on_model_failed)
        if self._welcome:
            self.client.run(jobs.ensure_welcome, background=True, name="welcome", on_result=self._on_welcome_done)
        for folder, collection in self.watcher.load().items():
            self._index([folder], collection)  # catch up on changes made while Enclave was closed

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        QTimer.singleShot(0, self.start_background_work)

    # --- public actions (also what tests and the drop use) ----------------------------------

    @Slot(list)
    def add_paths(self, paths: list[str]) -> None:
        """Index files and folders into the current collection; folders are then watched."""
        paths = [str(Path(p).resolve()) for p in paths if p]
        if not paths:
            return
        collection = self._collection
        if collection == jobs.WELCOME_COLLECTION:  # the guide stays the guide: files go to default
            collection = jobs.DEFAULT_COLLECTION
        self._user_indexed = True
        if collection != self._collection:
            self._set_collection(collection)
            self._refresh_library(collection)
        for folder in (p for p in paths if os.path.isdir(p)):
            self.watcher.watch(folder, collection)
        self._index(paths, collection)

    @Slot(str)
    def ask(self, question: str) -> None:
        """Answer `question` now, or after the answers before it; `answer_finished` or
        `answer_failed` follows, once per question."""
        self.answers.ask(question, self._collection)

    def is_answering(self) -> bool:
        """An answer is under way or a question waits for one."""
        return self.answers.busy()

    @Slot(dict)
    def show_source(self, source: dict) -> None:
        if not os.path.exists(source["path"]):
            self.bridge.report(f"{source['path']} is no longer on disk, so it cannot be shown.")
            return
        self.viewer.requested = source
        self._reveal_viewer()
        if self.viewer.may_be_scanned(source):
            if self.viewer.is_pdf(source):
                self.viewer.show_pdf(source)  # at once; a page OCR read then turns into its image
            if source.get("chunk_id"):
                self.client.run(jobs.page_words(source["chunk_id"]), name="page_words",
                                on_result=lambda found: self.viewer.show_source_page(source, found))
        else:
            self.client.run(jobs.document_text(source["path"]), name="document_text",
                            on_result=lambda text: self.viewer.show_text(source, text))

    def _reveal_viewer(self) -> None:
        """The source pane is folded away until a source is opened: then it takes the room
        the chat can spare."""
        if self.viewer.isHidden():
            self.viewer.show()
            total = sum(self.splitter.sizes())
            left = min(self.splitter.sizes()[0], max(220, total * 22 // 100))  # narrow windows: the chat keeps room
            self.splitter.setSizes([left, (total - left) * 45 // 100, (total - left) * 55 // 100])

    @Slot(str)
    def _on_example_requested(self, question: str) -> None:
        """The empty state's example: the Welcome guide answers it, so ask there."""
        if jobs.WELCOME_COLLECTION in self._collections and self._collection != jobs.WELCOME_COLLECTION:
            self._collection = jobs.WELCOME_COLLECTION
            self._refresh_library()
        self.ask(question)

    @Slot()
    def open_settings(self) -> None:
        try:
            current = Settings.load(self.data_dir)
        except Exception as exc:  # noqa: BLE001 - EnclaveError: a damaged settings file
            self.bridge.report(str(exc))
            return
        dialog = SettingsDialog(current, str(self.data_dir), self)
        if hasattr(dialog, "team_test_requested"):
            dialog.team_test_requested.connect(lambda team: self._test_team(dialog, team))
        if dialog.exec() and dialog.result_settings() is not None:
            self._apply_settings(current, dialog.result_settings())

    def _apply_settings(self, current: Settings, new: Settings) -> None:
        """Save and apply in the background, through the engine worker: a model reload or a
        re-index never holds the window."""
        reload, reindex = what_changes(current, new)
        if reindex:
            self.progress.begin("your documents (settings changed)")
        self.client.run(jobs.apply_settings(new, self.data_dir, reload, reindex), background=reindex,
                        name="index" if reindex else "settings",
                        on_progress=self._on_index_progress,
                        on_result=lambda r: r.get("model") and self._on_model_loaded(r["model"]),
                        on_finished=self._on_index_job_finished)  # refreshes the library, team too

    @Slot()
    def open_models(self) -> ModelsDialog | None:
        """The Models page: one per window, kept when closed, so a download goes on behind it."""
        if self.models_dialog is None:
            try:
                self.models_dialog = ModelsDialog(Settings.load(self.data_dir), str(self.data_dir), self)
            except Exception as exc:  # noqa: BLE001 - EnclaveError: damaged settings, an unreadable policy
                self.bridge.report(str(exc))
                return None
            self.models_dialog.settings_chosen.connect(self._on_model_chosen)
        else:
            self.models_dialog.refresh()
        self.models_dialog.show()
        self.models_dialog.raise_()
        return self.models_dialog

    def _on_model_chosen(self, new: Settings) -> None:
        try:
            current = Settings.load(self.data_dir)
        except Exception as exc:  # noqa: BLE001 - EnclaveError: a damaged settings file
            self.bridge.report(str(exc))
            return
        self._apply_settings(current, new)

    def _test_team(self, dialog, team) -> None:
        def reached(info: dict) -> None:
            seen = ", ".join(info["collections"]) or "no team collection granted to you yet"
            replica = ""
            if "replica" in info:
                replica = (f", replica {info['replica']}" if info["replica"]
                           else ", replica unreachable (searches use the database)")
            dialog.show_team_result(f"Connected: database {info['catalog']}{replica}. You see: {seen}.")

        self.client.run(jobs.test_team(team), name="team_test", on_result=reached,
                        on_failed=dialog.show_team_result)

    # --- indexing ------------------------------------------------------------------------

    def _index(self, paths: list[str], collection: str, force: bool = False, passwords: tuple = ()) -> None:
        for job in self.client.pending("index"):
            if not job.started and getattr(job, "spec", None) == (tuple(paths), collection, force):
                return  # the same run is already waiting
        self.progress.begin(", ".join(Path(p).name for p in paths[:3]) + ("…" if len(paths) > 3 else ""))
        job = self.client.run(jobs.index(paths, collection, force, passwords), background=True, name="index",
                              on_progress=lambda event: self._on_index_progress(event, collection),
                              on_result=self._on_index_result,
                              on_finished=self._on_index_job_finished)
        job.spec = (tuple(paths), collection, force)
        self._refresh_timer.start()

    def _for_index_jobs(self, method) -> None:
        for job in self.client.pending("index"):
            method(job)

    def _on_index_progress(self, event, collection: str | None = None) -> None:
        if hasattr(event, "files_total"):
            self.progress.update_progress(event.files_done, event.files_total, event.chunks_done,
                                          event.current, event.elapsed, event.eta, getattr(event, "detail", ""))
            if collection == self._collection:
                self.library.model.track(event)
            if getattr(event, "outcome", None) and not self._counts_timer.isActive():
                self._counts_timer.start()  # a file finished: the counts and its row change

    def _on_index_result(self, report) -> None:
        data = report.to_json() if hasattr(report, "to_json") else report
        problems = len(data["failed"]) + len(data["skipped"])
        self.status.showMessage(
            f"Indexed {counted(data['indexed'], 'file')}, unchanged {data['unchanged']}"
            + (f", {problems} not indexed (see the document list)" if problems else "")
            + (" — cancelled" if data["cancelled"] else ""), 8000)
        self.indexing_finished.emit(data)

    def _on_index_job_finished(self) -> None:
        if not self.client.pending("index"):
            self.progress.end()
            self.library.model.end_run()
            self._refresh_timer.stop()
        self._refresh_library()

    @Slot(str, str)
    def _on_watched_folder_changed(self, folder: str, collection: str) -> None:
        self._index([folder], collection)

    @Slot()
    def _on_refresh_tick(self) -> None:
        if not self.client.pending("library"):
            self._refresh_library()

    # --- library -------------------------------------------------------------------------

    _collections: list[str] = []

    def _refresh_library(self, select: str | None = None) -> None:
        self.client.run(jobs.library(select or self._collection), name="library", on_result=self._on_library)

    def _on_library(self, data: dict) -> None:
        self._collections = data["collections"]
        listed = [self.library.collections.item(i).text() for i in range(self.library.collections.count())]
        if (data["collection"] != self._collection or listed != data["collections"]
                or self.library.current_collection() != data["collection"]):
            self._set_collection(data["collection"])
            self.library.blockSignals(True)
            self.library.set_collections(data["collections"], data["collection"])
            self.library.blockSignals(False)
        self.library.set_documents(data["documents"])
        self.status.set_stats(data["stats"])
        self.status.set_team(data.get("team_hosts") or [], data.get("team_error"))
        self.library_refreshed.emit()

    def _library_change(self, fn, select: str | None = None) -> None:
        self.client.run(fn, name="library_change", on_finished=lambda: self._refresh_library(select))

    @Slot(str)
    def _on_collection_selected(self, name: str) -> None:
        if name and name != self._collection:
            self._set_collection(name)
            self._refresh_library()

    @Slot(str, str)
    def _on_collection_rename_requested(self, old: str, new: str) -> None:
        self.watcher.rename_collection(old, new)
        self._library_change(jobs.rename_collection(old, new), select=new)

    @Slot(str)
    def _on_collection_delete_requested(self, name: str) -> None:
        self.watcher.unwatch_collection(name)
        self._set_collection(jobs.DEFAULT_COLLECTION)
        self._library_change(jobs.delete_collection(name), select=jobs.DEFAULT_COLLECTION)

    # --- a damaged data folder ---------------------------------------------------------------

    _REPAIRS = {
        "settings": "The settings file is renamed and the defaults are used.",
        "store": "The vector store is renamed and every document in the library is indexed again.",
        "catalog": "The catalog and the vector store are renamed; documents must be added again.",
    }

    @Slot(dict)
    def _on_data_damaged(self, problems: dict) -> None:
        """Start-up checks found damage: say what, and repair only if the user agrees."""
        steps = " ".join(self._REPAIRS[part] for part in problems if part in self._REPAIRS)
        text = ("Enclave found problems in its data folder:\n\n"
                + "\n".join(f"• {what}" for what in problems.values())
                + f"\n\nRepair it now? {steps} Nothing is deleted: the damaged files stay in "
                f"{self.data_dir}.")
        answer = QMessageBox.question(self, "Repair the data folder", text,
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        if answer != QMessageBox.Yes:
            self.status.set_model(None, "The data folder needs repair")
            self.bridge.report("Nothing was changed. Enclave cannot use its data folder until it is "
                               "repaired: restart Enclave to be asked again, or run `enclave-cli doctor`.")
            return
        from rag import health  # light: Chroma is only ever opened in a child process there

        parts, folder = set(problems), self.data_dir
        self.worker.restart(lambda: health.set_aside(folder, parts))
        if "store" in parts and "catalog" not in parts:
            self.progress.begin("rebuilding the index")
            self.client.run(jobs.reindex_catalog, background=True, name="index",
                            on_result=self._on_index_result, on_finished=self._on_index_job_finished)

    # --- model, welcome -----------------------------------------------------------------------

    def _on_model_loaded(self, info: dict) -> None:
        self.status.set_model(info)
        self.model_loaded.emit(info)

    def _on_model_failed(self, message: str) -> None:
        self.status.set_model(None, message)
        self.bridge.report(message + " Choose another model file in Settings (Ctrl+,).")

    def _on_welcome_done(self, report: dict | None) -> None:
        if report is not None and not self._user_indexed:
            # first run: show the guide so the first question has an answer
            self._refresh_library(select=jobs.WELCOME_COLLECTION)

    # --- answers -------------------------------------------------------------------------

    @Slot()
    def _on_stop_requested(self) -> None:
        self.answers.stop()

    def _answer_stall_s(self) -> float:
        """Read as each answer starts, so a changed setting applies to the next question."""
        try:
            return Settings.load(self.data_dir).answer_stall_s
        except Exception:  # noqa: BLE001 - a damaged settings file: start-up checks report it
            return Settings.answer_stall_s

    def _on_answer_result(self, result: dict) -> None:
        shown, self._conversation = self._conversation, result["conversation"]
        answer = result["answer"]
        self.chat.finish_answer(answer, stopped=result["stopped"])
        if shown is not None and shown != self._conversation:
            # The engine started a new conversation (the shown one is another collection's):
            # show that one, not the old one with this answer below it.
            self.client.run(jobs.messages(self._conversation), on_result=self.chat.set_messages)
        self._refresh_conversations()  # a first answer titles its conversation
        self.answer_finished.emit({k: v for k, v in answer.items() if k != "question"})

    def _on_answer_failed(self, message: str) -> None:
        self.chat.fail_answer(message)
        self.bridge.report(message)
        # The model may have been restarted (on the CPU after crashes on the GPU): show where.
        self.client.run(jobs.load_model, name="load_model", on_result=self._on_model_loaded,
                        on_failed=self._on_model_failed)
        self._refresh_conversations()
        self.answer_failed.emit(message)

    # --- conversations ---------------------------------------------------------------------

    def _refresh_conversations(self, select_latest: bool = False) -> None:
        def show(rows):
            self._conversation_rows = rows
            shown = self._conversation_collection()
            if (select_latest and self._conversation is None) or shown not in (None, self._collection):
                self._show_collection_conversation()  # a collection chosen during an answer: now
            self.conversations.set_conversations(rows, self._conversation)

        self.client.run(jobs.conversations, name="conversations", on_result=show)

    def _conversation_collection(self) -> str | None:
        row = next((r for r in self._conversation_rows if r["id"] == self._conversation), None)
        return row["collection"] if row else None

    def _set_collection(self, name: str) -> None:
        """Choose the collection questions are asked in; the chat follows it to its own
        conversation (a conversation's earlier turns join follow-ups' searches, and they
        were answered from that collection's documents)."""
        if name == self._collection:
            return
        self._collection = name
        self.library.model.end_run()  # a run's files are shown in their own collection only
        self._show_collection_conversation()

    def _show_collection_conversation(self) -> None:
        """Show the chosen collection's latest conversation, or an empty chat whose first
        question starts one. Not while a question is answered: it already chose (or made)
        its conversation; the switch happens when the answers end."""
        if self.is_answering() or self._conversation_collection() == self._collection:
            return
        latest = next((r for r in self._conversation_rows if r["collection"] == self._collection), None)
        self._conversation = latest["id"] if latest else None
        if latest is None:
            self.chat.set_messages([])
        else:
            self.client.run(jobs.messages(latest["id"]), on_result=self.chat.set_messages)
        self.conversations.select_conversation(self._conversation)

    def _refused_while_answering(self) -> bool:
        """Questions in flight belong to the conversation shown: keep it until they are done."""
        if not self.is_answering():
            return False
        self.conversations.select_conversation(self._conversation)
        self.status.showMessage("Enclave is still answering in this conversation; change "
                                "conversations when it is done.", 8000)
        return True

    @Slot(int)
    def _on_conversation_selected(self, conversation: int) -> None:
        if conversation != self._conversation and not self._refused_while_answering():
            self._conversation = conversation
            self.client.run(jobs.messages(conversation), on_result=self.chat.set_messages)
            collection = self._conversation_collection()
            if collection and collection != self._collection and collection in self._collections:
                # Its follow-ups are asked in its own collection: the library shows that one.
                self._collection = collection
                self._refresh_library(collection)

    @Slot()
    def _on_new_conversation_requested(self) -> None:
        if self._refused_while_answering():
            return

        def created(conversation: int):
            self._conversation = conversation
            self.chat.set_messages([])
            self._refresh_conversations()

        self.client.run(jobs.create_conversation(self._collection), on_result=created)

    @Slot(int)
    def _on_conversation_delete_requested(self, conversation: int) -> None:
        if conversation == self._conversation and self._refused_while_answering():
            return
        if conversation == self._conversation:
            self._conversation = None
            self.chat.set_messages([])
        self.client.run(jobs.delete_conversation(conversation), on_finished=self._refresh_conversations)

    @Slot(int)
    def _on_export_requested(self, conversation: int | None) -> None:
        if conversation is None:
            return
        target, _ = QFileDialog.getSaveFileName(self, "Export conversation", str(Path.home() / "conversation.md"),
                                                "Markdown (*.md)")
        if target:
            self.client.run(jobs.export_conversation(conversation, target),
                            on_result=lambda path: self.status.showMessage(f"Exported to {path}", 5000))

    @Slot()
    def _on_about(self) -> None:
        QMessageBox.about(self, "About Enclave",
                          "Enclave answers questions from your documents with a small local model.\n"
                          "Nothing leaves this machine: no account, no network, no telemetry.")

    # --- drag and drop -------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
            self.drop_hint.show_over_parent()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.drop_hint.hide()
        super().dragLeaveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop_hint.hide()
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            models = [p for p in paths if str(p).lower().endswith(".gguf")]
            if models and len(models) == len(paths):  # a model file is imported, not indexed
                dialog = self.open_models()
                if dialog is not None:
                    dialog.import_path(str(models[0]))
                return
            self.add_paths(paths)

    # --- geometry and closing -------------------------------------------------------------------

    def _geometry_store(self) -> QSettings:
        return QSettings(str(self.data_dir / "window.ini"), QSettings.IniFormat)

    def _restore_geometry(self) -> None:
        store = self._geometry_store()
        geometry, splitter = store.value("geometry"), store.value("splitter")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([300, 700, 0])
        self.viewer.hide()  # until a source is opened (restoreState may have shown it)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        store = self._geometry_store()
        store.setValue("geometry", self.saveGeometry())
        store.setValue("splitter", self.splitter.saveState())
        store.sync()
        try:
            os.chmod(store.fileName(), 0o600)  # everything in the data folder is private
        except OSError:
            pass
        self._refresh_timer.stop()
        if self.models_dialog is not None:
            self.models_dialog.shutdown()
        self.answers.close()
        self.worker.shutdown()
        self.bridge.uninstall()
        super().closeEvent(event)
