"""The window with a team database: the Team settings page, its connection test, team
collections in the library, files added to one, and the status bar naming the server."""

from __future__ import annotations

import pytest

from desktop.settings_dialog import SettingsDialog
from rag.config import Settings, TeamSettings


@pytest.fixture
def team_window(qtbot, data_dir, real_embedder, team):
    from desktop.app import create_main_window
    from rag.engine import Engine

    settings = team.settings("alice")
    settings.top_k = 3

    def engine(folder):
        return Engine(folder, settings=settings, embedder=real_embedder)

    window = create_main_window(data_dir, engine_factory=engine, welcome=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()
    assert not window.worker.is_running()


def test_the_team_page_validates_and_its_test_reaches_the_servers(qtbot, team_window, team, data_dir):
    dialog = SettingsDialog(Settings(), str(data_dir))
    qtbot.addWidget(dialog)
    assert dialog.tabs.tabText(1) == "Team"
    dialog.team_dsn.setText("https://vectors.internal:8443")
    assert "team.postgres_dsn must be a PostgreSQL connection string" in dialog.message.text()
    dialog._on_team_test_clicked()
    assert "must be a PostgreSQL connection string" in dialog.team_result.text()

    wanted = team.settings("alice").team
    dialog.team_dsn.setText(wanted.postgres_dsn)
    dialog.team_ca.setText(wanted.ca_file)
    assert dialog.chosen().team == wanted
    dialog.team_test_requested.connect(lambda t: team_window._test_team(dialog, t))
    dialog._on_team_test_clicked()
    qtbot.waitUntil(lambda: dialog.team_result.text().startswith("Connected"), timeout=30_000)
    assert "team:handbook" in dialog.team_result.text() and "team:board" in dialog.team_result.text()

    dialog.team_dsn.setText(wanted.postgres_dsn.replace(f"port={team.servers.tls_port}", "port=9"))
    dialog._on_team_test_clicked()
    qtbot.waitUntil(lambda: "cannot be reached" in dialog.team_result.text(), timeout=30_000)
    assert "local collections keep working" in dialog.team_result.text()


def test_files_added_to_a_team_collection_from_the_window(qtbot, team_window, team, multicolumn):
    window = team_window
    qtbot.waitUntil(lambda: "team:handbook" in window._collections, timeout=30_000)
    status = window.status.team
    assert status.isVisible()
    assert status.text() == f"Team: 127.0.0.1:{team.servers.tls_port}"
    window.library.collection_selected.emit("team:handbook")
    qtbot.waitUntil(lambda: window._collection == "team:handbook", timeout=10_000)
    with qtbot.waitSignal(window.indexing_finished, timeout=180_000) as finished:
        window.add_paths([str(multicolumn)])
    assert finished.args[0]["indexed"] == 1
    db = team.admin()
    assert db.execute("SELECT path FROM enclave_documents WHERE collection = 'handbook'").fetchall() == [
        (str(multicolumn),)]
    db.close()
    with qtbot.waitSignal(window.answer_finished, timeout=180_000) as answered:
        window.ask("What is the capital of Denmark?")
    answer = answered.args[0]
    sources = answer["sources"] if isinstance(answer, dict) else answer.sources
    assert sources[0]["path"] == str(multicolumn) and sources[0]["page"] == 3


def test_without_team_settings_the_status_bar_names_no_team(qtbot, window):
    qtbot.waitUntil(lambda: window.library.collections.count() >= 1, timeout=30_000)
    assert not window.status.team.isVisible()
    assert TeamSettings().hosts() == []
