"""The Models page in the real window: fit labels, a download from the stand-in hub with
progress and cancel (then resumed), imports dropped or chosen, the policy, and a switch of
model that loads in the background."""

from __future__ import annotations

import shutil
import threading

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from rag.config import Settings
from rag.llm.bundled import DEFAULT_MODEL_SHA256, default_model_path
from rag.models.fit import LABELS
from tests.hub import BUNDLED_FILE, hub, no_policy  # noqa: F401 (fixtures)


def test_download_shows_progress_cancels_resumes_and_the_model_is_switched_in_the_background(
        make_window, hub, qtbot, data_dir):
    window = make_window()
    dialog = window.open_models()
    assert dialog.isVisible() and dialog.fit_labels()["smol-test"] in LABELS.values()
    dialog.select("smol-test")
    assert dialog.download_button.isEnabled() and not dialog.use_button.isEnabled()  # not downloaded yet
    assert "trained context 8,192 tokens" in dialog.details.text()

    gate = threading.Event()
    hub.gate, hub.gate_after = gate, 25_000_000  # the hub holds the transfer there until the cancel
    qtbot.mouseClick(dialog.download_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog.progress.value() > 0 and "MB/s" in dialog.status.text(), timeout=60_000)
    assert dialog.progress.isVisible() and dialog.cancel_button.isEnabled()
    assert not dialog.download_button.isEnabled()  # one task at a time

    with qtbot.waitSignal(dialog.task_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
        gate.set()  # the next chunk arrives, and the download stops there
    assert finished.args == ["cancelled"] and "next pull resumes" in dialog.status.text()
    parts = list((data_dir / "models" / ".partial").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0
    kept = parts[0].stat().st_size

    with qtbot.waitSignal(dialog.task_finished, timeout=120_000) as finished:
        qtbot.mouseClick(dialog.download_button, Qt.LeftButton)
    assert finished.args == ["done"] and "verified" in dialog.status.text()
    assert hub.ranges() == [f"bytes={kept}-"]
    installed = data_dir / "models" / BUNDLED_FILE
    assert installed.read_bytes() == default_model_path().read_bytes()
    assert dialog.use_button.isEnabled()

    # The window loads the bundled model at launch; the switch is the load of the new file.
    with qtbot.waitSignal(window.model_loaded, timeout=180_000,
                          check_params_cb=lambda info: info.get("path") == str(installed)):
        qtbot.mouseClick(dialog.use_button, Qt.LeftButton)
        assert "Switching" in dialog.status.text() or "Checking" in dialog.status.text()
    assert Settings.load(data_dir).llm_model == str(installed)
    assert "in use" in [dialog.table.item(i, 3).text() for i in range(dialog.table.rowCount())]


def drop_on(widget, path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    centre = widget.rect().center()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        QApplication.sendEvent(widget, QDragEnterEvent(QPoint(centre), Qt.CopyAction, mime, Qt.LeftButton,
                                                       Qt.NoModifier))
    QApplication.sendEvent(widget, QDropEvent(QPointF(centre), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def test_imports_dropped_on_the_page_are_checked_and_listed_and_the_policy_shows(
        make_window, qtbot, data_dir, tmp_path, no_policy, monkeypatch):
    monkeypatch.setenv("ENCLAVE_CATALOG_FILE", str(_one_entry_catalog(tmp_path)))
    no_policy.write_text("allow_downloads = false\n")
    window = make_window()
    dialog = window.open_models()
    assert str(no_policy) in dialog.policy_note.text()
    assert not dialog.download_button.isEnabled() and str(no_policy) in dialog.download_button.toolTip()

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(default_model_path().read_bytes()[:3_000_000])
    with qtbot.waitSignal(dialog.task_finished, timeout=60_000) as finished:
        drop_on(dialog, truncated)
    assert finished.args == ["failed"] and "is truncated" in dialog.status.text()

    good = tmp_path / "usb" / "team-model.gguf"
    good.parent.mkdir()
    shutil.copy(default_model_path(), good)
    with qtbot.waitSignal(dialog.task_finished, timeout=60_000) as finished:
        drop_on(dialog, good)
    assert finished.args == ["done"] and DEFAULT_MODEL_SHA256[:12] in dialog.status.text()
    labels = dialog.fit_labels()
    assert labels["team-model"] in LABELS.values()
    assert dialog.selected().name == "team-model" and dialog.use_button.isEnabled()


def _one_entry_catalog(tmp_path):
    from tests.hub import write_catalog

    return write_catalog(tmp_path / "catalog.toml", DEFAULT_MODEL_SHA256)


def test_settings_show_each_models_behaviour_and_the_policy_on_model_servers(qtbot, data_dir, no_policy):
    from desktop.settings_dialog import SettingsDialog

    no_policy.write_text("allow_remote_server = false\n")
    dialog = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(dialog)
    text = dialog.model_behaviour.text()
    assert any(label in text for label in LABELS.values())
    assert "Trained context 8,192 tokens" in text and "Chat template: the one stored in the file" in text
    assert "Refusal cut: 0.24 (the general setting)" in text
    assert not dialog.endpoint.isEnabled() and str(no_policy) in dialog.endpoint.toolTip()


def test_a_gguf_dropped_on_the_window_is_imported_not_indexed(make_window, qtbot, data_dir, tmp_path, no_policy,
                                                               monkeypatch):
    from tests.desktop.conftest import drop

    monkeypatch.setenv("ENCLAVE_CATALOG_FILE", str(_one_entry_catalog(tmp_path)))
    window = make_window()
    model = tmp_path / "dropped.gguf"
    shutil.copy(default_model_path(), model)
    drop(window, [model])
    dialog = window.models_dialog
    assert dialog is not None and dialog.isVisible()
    assert not window.client.pending("index")  # not sent to the indexer
    qtbot.waitUntil(lambda: "dropped" in dialog.fit_labels(), timeout=60_000)
    assert (data_dir / "models" / "dropped.gguf").exists()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=60_000)
