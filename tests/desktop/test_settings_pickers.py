"""The settings dialog's two model pickers: the bundled model, the one in use, one chosen."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton

from desktop.settings_dialog import BUNDLED_EMBEDDER, BUNDLED_LLM, SettingsDialog
from rag.config import Settings, default_embedding_model, default_llm_model


def items(combo) -> list[tuple[str, str]]:
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def test_pickers_list_the_bundled_and_the_current_model(qtbot, data_dir, tmp_path):
    plain = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(plain)
    assert items(plain.model) == [(BUNDLED_LLM, "")] and items(plain.embedder) == [(BUNDLED_EMBEDDER, "")]

    chosen = Settings(llm_model=str(tmp_path / "mine.gguf"), embedding_model=str(tmp_path / "embedder"))
    dialog = SettingsDialog(chosen, str(data_dir))
    qtbot.addWidget(dialog)
    assert items(dialog.model) == [(BUNDLED_LLM, ""), (chosen.llm_model, chosen.llm_model)]
    assert items(dialog.embedder) == [(BUNDLED_EMBEDDER, ""), (chosen.embedding_model, chosen.embedding_model)]
    assert dialog.model.currentIndex() == 1 and dialog.embedder.currentIndex() == 1
    assert dialog.model.objectName() == "modelChoice"
    assert dialog.model.accessibleName() == "Answering model file"
    assert dialog.embedder.accessibleName() == "Embedding model"
    assert dialog.chosen() == chosen


def test_pickers_add_and_select_what_is_chosen_and_refuse_what_is_not_a_model(qtbot, data_dir, tmp_path,
                                                                            monkeypatch):
    dialog = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(dialog)
    buttons = {b.accessibleName(): b for b in dialog.findChildren(QPushButton)}

    gguf = str(default_llm_model())
    monkeypatch.setattr("desktop.settings_dialog.QFileDialog.getOpenFileName", lambda *a, **k: (gguf, ""))
    buttons["Choose a GGUF model file"].click()
    assert dialog.model.currentData() == gguf and dialog.model.count() == 2
    assert "loaded again" in dialog.message.text()

    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    folders = iter([str(not_a_model), str(default_embedding_model())])
    monkeypatch.setattr("desktop.settings_dialog.QFileDialog.getExistingDirectory", lambda *a, **k: next(folders))
    buttons["Choose an embedding model folder"].click()
    assert "no config.json" in dialog.message.text() and dialog.embedder.count() == 1
    buttons["Choose an embedding model folder"].click()
    assert dialog.embedder.currentData() == str(default_embedding_model()) and dialog.embedder.count() == 2
    assert "indexed again" in dialog.message.text()
