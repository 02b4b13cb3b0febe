"""The settings dialog: validated with Settings.validate(); says what a change will cost."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
    QLabel, QLineEdit, QPushButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget,
)

from rag.config import Settings, TeamSettings
from rag.errors import EnclaveError

RELOAD_FIELDS = ("llm_model", "gpu_layers", "context_size", "llm_endpoint", "llm_api_key_env",
                 "llm_endpoint_model", "llm_timeout_s", "llm_ca_file")
REINDEX_FIELDS = ("chunk_tokens", "chunk_overlap", "embedding_model", "ocr")
BUNDLED_LLM = "Bundled: SmolLM2-135M-Instruct (default)"
BUNDLED_EMBEDDER = "Bundled: all-MiniLM-L6-v2 (default)"


def what_changes(old: Settings, new: Settings) -> tuple[bool, bool]:
    """(needs a model reload, needs a re-index)."""
    reload = any(getattr(old, f) != getattr(new, f) for f in RELOAD_FIELDS)
    reindex = any(getattr(old, f) != getattr(new, f) for f in REINDEX_FIELDS)
    return reload, reindex



class _WrappingLabel(QLabel):
    """A word-wrapped label that asks for the height its text needs at its width: a form
    inside tabs sizes rows from the label's unwrapped hint, which cut the last line."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setWordWrap(True)

    def _claim_height(self) -> None:
        need = self.heightForWidth(self.width())
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._claim_height()

    def setText(self, text: str) -> None:
        super().setText(text)
        self._claim_height()

class SettingsDialog(QDialog):
    # The window runs the test where the engine lives and answers with show_team_result().
    team_test_requested = Signal(object)  # TeamSettings

    def __init__(self, settings: Settings, data_dir: str, parent=None):
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Enclave settings")
        self._original = settings
        self._result: Settings | None = None

        self.model, model_row = _model_picker(
            BUNDLED_LLM, settings.llm_model, "Answering model file",
            "Choose GGUF…", "Choose a GGUF model file", self._on_choose_model_clicked)
        self.model.setObjectName("modelChoice")
        # What this model brings with it: its fit here, its trained context, its chat
        # template and refusal cut (issue 23: per-model behaviour shown in Settings).
        self.model_behaviour = _WrappingLabel()
        self.model_behaviour.setObjectName("modelBehaviour")
        self.model_behaviour.setWordWrap(True)

        self.gpu_mode = QComboBox()
        self.gpu_mode.setAccessibleName("GPU layers")
        self.gpu_mode.addItems(["Auto (all layers on a GPU if there is one)", "CPU only (0)", "Number of layers"])
        self.gpu_layers = QSpinBox()
        self.gpu_layers.setAccessibleName("Number of GPU layers")
        self.gpu_layers.setRange(1, 999)
        if settings.gpu_layers < 0:
            self.gpu_mode.setCurrentIndex(0)
        elif settings.gpu_layers == 0:
            self.gpu_mode.setCurrentIndex(1)
        else:
            self.gpu_mode.setCurrentIndex(2)
            self.gpu_layers.setValue(settings.gpu_layers)
        self.gpu_mode.currentIndexChanged.connect(self._on_gpu_mode_changed)
        self._on_gpu_mode_changed(self.gpu_mode.currentIndex())

        self.context = self._spin(256, 262144, settings.context_size, "Context size in tokens", step=512)
        self.temperature = QDoubleSpinBox()
        self.temperature.setAccessibleName("Temperature")
        self.temperature.setRange(-1.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(settings.temperature)
        self.top_k = self._spin(0, 200, settings.top_k, "Sources retrieved per question (top-k)")
        self.chunk = self._spin(1, 2000, settings.chunk_tokens, "Chunk size in word pieces")

        self.embedder, embedder_row = _model_picker(
            BUNDLED_EMBEDDER, settings.embedding_model, "Embedding model",
            "Choose folder…", "Choose an embedding model folder", self._on_choose_embedder_clicked)

        self.endpoint = QLineEdit(settings.llm_endpoint)
        self.endpoint.setObjectName("modelServer")
        self.endpoint.setAccessibleName("Model server address")
        self.endpoint.setPlaceholderText("Empty: answer on this machine. A team's server: http://gpu-box.internal:8080")
        self.endpoint.setToolTip("An OpenAI-compatible server (llama-server, vLLM). Questions and the passages "
                                 "found for them go to it; documents and the index stay here.")
        self.key_env = QLineEdit(settings.llm_api_key_env)
        self.key_env.setObjectName("modelServerKeyVariable")
        self.key_env.setAccessibleName("Environment variable holding the server's API key")
        self.key_env.setPlaceholderText("e.g. ENCLAVE_MODEL_KEY (the key itself is never stored)")
        self.ocr = QCheckBox("Read scanned pages and images (OCR)")
        self.ocr.setObjectName("ocrChoice")
        self.ocr.setAccessibleName("Read scanned pages and images with OCR")
        self.ocr.setToolTip("Pages without a text layer and PNG, JPEG and TIFF files are read on this machine. "
                            "The bundled models read Latin scripts and Chinese.")
        self.ocr.setChecked(settings.ocr)
        self.ocr.toggled.connect(self._on_changed)

        folder = QLineEdit(str(data_dir))
        folder.setReadOnly(True)
        folder.setAccessibleName("Data folder")
        folder.setToolTip("Set ENCLAVE_DATA_DIR before starting Enclave to move it.")

        form = QFormLayout()
        form.addRow("Model file", model_row)
        form.addRow("", self.model_behaviour)
        form.addRow("GPU layers", _pair(self.gpu_mode, self.gpu_layers))
        form.addRow("Context size", self.context)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.top_k)
        form.addRow("Chunk size", self.chunk)
        form.addRow("Embedding model", embedder_row)
        form.addRow("Model server", self.endpoint)
        form.addRow("API key variable", self.key_env)
        form.addRow("Scanned pages", self.ocr)
        form.addRow("Data folder", folder)

        general = QWidget()
        general.setLayout(form)
        self.tabs = QTabWidget()
        self.tabs.addTab(general, "General")
        self.tabs.addTab(self._team_page(settings.team), "Team")

        self.message = QLabel()
        self.message.setObjectName("settingsMessage")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        for field in (self.model, self.gpu_mode, self.embedder):
            field.currentIndexChanged.connect(self._on_changed)
        for field in (self.context, self.gpu_layers, self.top_k, self.chunk, self.temperature):
            field.valueChanged.connect(self._on_changed)
        for field in (self.endpoint, self.key_env, self.team_dsn, self.team_read_dsn,
                      self.team_ca):
            field.textChanged.connect(self._on_changed)
        self.model.currentIndexChanged.connect(self._on_model_changed)
        self.context.valueChanged.connect(self._on_model_changed)
        self._apply_policy()
        self._on_model_changed()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

    def _apply_policy(self) -> None:
        """An administrator who allows no model server gets a field that cannot name one."""
        from rag.models.policy import load_policy

        try:
            policy = load_policy()
        except EnclaveError as exc:
            self.message.setText(str(exc))
            return
        if not policy.allow_remote_server:
            for field in (self.endpoint, self.key_env):
                field.setEnabled(False)
                field.setToolTip(f"Your administrator does not allow a model server (policy {policy.path}).")

    @Slot()
    def _on_model_changed(self, *_args) -> None:
        from rag.config import default_llm_model
        from rag.llm.gguf import check_gguf
        from rag.models.catalog import load_catalog
        from rag.models.fit import detect_machine, geometry_from_gguf, judge

        try:
            path = Path(self.model.currentData() or default_llm_model())
            info = check_gguf(path)  # the header only: milliseconds
            fit = judge(geometry_from_gguf(info), detect_machine(), self.context.value())
            entry = next((e for e in load_catalog() if e.file == path.name), None)
        except EnclaveError as exc:
            self.model_behaviour.setText(str(exc))
            return
        refusal = entry.refusal_probability if entry and entry.refusal_probability is not None else None
        parts = [f"On this machine: {fit.label} ({fit.reason}).",
                 f"Trained context {info.context_length:,} tokens; a larger context size is capped there."
                 if info.context_length else "The file does not say its trained context.",
                 "Chat template: the one stored in the file." if info.chat_template
                 else "The file has no chat template; Enclave uses a plain one.",
                 f"Refusal cut: {refusal:g} (measured for this model)." if refusal is not None
                 else f"Refusal cut: {self._original.model_refusal_probability:g} (the general setting)."]
        self.model_behaviour.setText(" ".join(parts))

    def _team_page(self, team: TeamSettings) -> QWidget:
        def line(value, name, placeholder, object_name):
            edit = QLineEdit(value)
            edit.setObjectName(object_name)
            edit.setAccessibleName(name)
            edit.setPlaceholderText(placeholder)
            return edit

        self.team_dsn = line(team.postgres_dsn, "Team database (PostgreSQL connection string)",
                             "host=db.internal dbname=enclave user=alice sslmode=verify-full", "teamCatalog")
        self.team_read_dsn = line(team.read_dsn, "Team replica for searches (optional connection string)",
                                  "host=db-replica.internal dbname=enclave user=alice sslmode=verify-full",
                                  "teamReplica")
        self.team_ca = line(team.ca_file, "CA file for the team database's certificate", "/etc/enclave/team-ca.pem",
                            "teamCaFile")
        ca_button = QPushButton("Choose…")
        ca_button.setAccessibleName("Choose the CA file")
        ca_button.clicked.connect(self._on_choose_ca_clicked)
        self.team_test = QPushButton("Test connection")
        self.team_test.setObjectName("teamTest")
        self.team_test.clicked.connect(self._on_team_test_clicked)
        self.team_result = QLabel("")
        self.team_result.setObjectName("teamResult")
        self.team_result.setWordWrap(True)
        note = QLabel("Collections named team:NAME are stored in this database, and only there. "
                      "Documents in your other collections never leave this machine. "
                      "Your PostgreSQL password comes from PGPASSWORD or ~/.pgpass, or a client "
                      "certificate from sslcert and sslkey in the connection string.")
        note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Database (PostgreSQL)", self.team_dsn)
        form.addRow("Replica for searches", self.team_read_dsn)
        form.addRow("CA file", _pair(self.team_ca, ca_button))
        form.addRow("", self.team_test)
        form.addRow("", self.team_result)
        form.addRow(note)
        page = QWidget()
        page.setLayout(form)
        return page

    def chosen_team(self) -> TeamSettings:
        return dataclasses.replace(
            self._original.team,
            postgres_dsn=self.team_dsn.text().strip(),
            read_dsn=self.team_read_dsn.text().strip(),
            ca_file=self.team_ca.text().strip(),
        )

    def show_team_result(self, text: str) -> None:
        self.team_test.setEnabled(True)
        self.team_result.setText(text)

    @Slot()
    def _on_team_test_clicked(self) -> None:
        team = self.chosen_team()
        problems = team.problems() if team.configured else ["Fill in the database connection string first."]
        if problems:
            self.team_result.setText("; ".join(problems))
            return
        self.team_test.setEnabled(False)
        self.team_result.setText("Connecting…")
        self.team_test_requested.emit(team)

    @Slot()
    def _on_choose_ca_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the team's CA file", str(Path.home()),
                                              "Certificates (*.pem *.crt);;All files (*)")
        if path:
            self.team_ca.setText(path)

    def _spin(self, low, high, value, name, step=1) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setValue(value)
        spin.setAccessibleName(name)
        return spin

    def chosen(self) -> Settings:
        gpu = {0: -1, 1: 0}.get(self.gpu_mode.currentIndex(), self.gpu_layers.value())
        return dataclasses.replace(
            self._original,
            llm_model=self.model.currentData() or "",
            gpu_layers=gpu,
            context_size=self.context.value(),
            temperature=round(self.temperature.value(), 2),
            top_k=self.top_k.value(),
            chunk_tokens=self.chunk.value(),
            chunk_overlap=min(self._original.chunk_overlap, max(self.chunk.value() // 2 - 1, 0)),
            embedding_model=self.embedder.currentData() or "",
            llm_endpoint=self.endpoint.text().strip(),
            llm_api_key_env=self.key_env.text().strip(),
            ocr=self.ocr.isChecked(),
            team=self.chosen_team(),
        )

    def result_settings(self) -> Settings | None:
        return self._result

    def _validated(self) -> Settings | None:
        """The chosen settings, or None after showing why they are not valid."""
        new = self.chosen()
        try:
            new.validate()
        except EnclaveError as exc:
            self.message.setText(str(exc))
            return None
        return new

    @Slot()
    def _on_changed(self, *_args) -> None:
        new = self._validated()
        if new is None:
            return
        reload, reindex = what_changes(self._original, new)
        notes = []
        if reload:
            notes.append("The answering model will be loaded again in the background.")
        if reindex:
            notes.append("Your documents will be indexed again in the background.")
        self.message.setText(" ".join(notes))

    @Slot(int)
    def _on_gpu_mode_changed(self, index: int) -> None:
        self.gpu_layers.setEnabled(index == 2)

    @Slot()
    def _on_choose_model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if not path:
            return
        from rag.llm.gguf import check_gguf  # reads the header only

        try:
            check_gguf(path)
        except EnclaveError as exc:
            self.message.setText(str(exc))
            return
        _choose(self.model, path)

    @Slot()
    def _on_choose_embedder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a sentence-transformers model folder", str(Path.home()))
        if not folder:
            return
        if not (Path(folder) / "config.json").exists():
            self.message.setText(f"{folder} is not a sentence-transformers model folder (it has no config.json).")
            return
        _choose(self.embedder, folder)

    @Slot()
    def _on_accepted(self) -> None:
        new = self._validated()
        if new is None:
            return
        self._result = new
        self.accept()


def _model_picker(bundled: str, current: str, name: str, button_text: str, button_name: str,
                  on_choose) -> tuple[QComboBox, QWidget]:
    """A model choice: the bundled model (an empty path), the one in use, and a button that
    looks for another; returns the list and the row that holds it and the button."""
    choice = QComboBox()
    choice.setAccessibleName(name)
    choice.addItem(bundled, "")
    if current:
        _choose(choice, current)
    button = QPushButton(button_text)
    button.setAccessibleName(button_name)
    button.clicked.connect(on_choose)
    return choice, _pair(choice, button)


def _choose(choice: QComboBox, path: str) -> None:
    choice.addItem(path, path)
    choice.setCurrentIndex(choice.count() - 1)


def _pair(first: QWidget, second: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(first, 1)
    layout.addWidget(second)
    return box
