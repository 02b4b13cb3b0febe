"""#21: while indexing, the library showed only the current file ("Indexing… 0"), the status
bar stayed at "1 documents · 4 chunks", the ETA said "estimating…" at 13 of 17 files, and
file names were cut mid-word over two lines while the State column took the room."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView

from desktop.library import LibraryWidget
from desktop.progress import IndexProgressWidget
from desktop.status import StatusBarWidget
from rag.types import Progress

FILES = 40


def lighthouse_notes(tmp_path):
    folder = tmp_path / "lighthouses"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"lighthouse-{i:02d}.txt").write_text(
            f"Lighthouse log {i}. The keeper of light {i} writes the weather down at dawn and at dusk.\n")
    (folder / "broken.pdf").write_bytes(b"this is not a PDF at all, only some bytes\n" * 20)
    return folder


def test_every_file_of_a_run_shows_its_state_and_the_counts_follow(qtbot, window, tmp_path, monkeypatch):
    import rag.ingest.indexer

    monkeypatch.setattr(rag.ingest.indexer, "FLUSH_SECONDS", 0.0)  # each file stored as it is read
    folder = lighthouse_notes(tmp_path)
    paths = sorted(str(p) for p in folder.iterdir())
    model = window.library.model
    snapshots: list[dict] = []  # what the table showed after each change during the run
    finished = []

    def on_reset():
        if not finished:
            snapshots.append({model.index(r, 0).data(Qt.UserRole + 1): (model.index(r, 1).data(),
                                                                         model.index(r, 1).data(Qt.ToolTipRole))
                              for r in range(model.rowCount())})

    model.modelReset.connect(on_reset)
    model.dataChanged.connect(lambda *_: on_reset())
    window.indexing_finished.connect(finished.append)
    events = []
    window.worker.progress.connect(lambda job, event: events.append(event))

    counts_while_paused = []

    def pause_once(event):
        # Paused after some files are done: the status bar's counts must already show them.
        if not counts_while_paused and getattr(event, "outcome", None) and event.files_done >= 3:
            counts_while_paused.append(None)
            qtbot.mouseClick(window.progress.pause_button, Qt.LeftButton)

    window.worker.progress.connect(lambda job, event: pause_once(event))
    window.add_paths([str(folder)])
    qtbot.waitUntil(lambda: bool(counts_while_paused), timeout=120_000)
    qtbot.waitUntil(lambda: window.status.counts.text() not in ("", "0 documents · 0 chunks"), timeout=20_000)
    shown = window.status.counts.text()
    documents = int(shown.split()[0])
    assert 1 <= documents < FILES, shown
    assert shown.startswith(f"{documents} document{'s' if documents != 1 else ''} ·"), shown
    assert not finished
    with qtbot.waitSignal(window.indexing_finished, timeout=180_000):
        qtbot.mouseClick(window.progress.pause_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.status.counts.text().startswith(f"{FILES} documents"), timeout=20_000)

    # at the start, every file of the run is listed as queued
    first = next(s for s in snapshots if set(paths) <= set(s))
    assert {state for path, (state, _) in first.items() if path in paths} == {"Queued"}
    # each file showed how it ended while the run was still going on, a failure with its reason
    for path in paths:
        ends = [s[path] for s in snapshots if path in s and s[path][0] not in ("Queued",) and
                not s[path][0].startswith("Indexing")]
        assert ends, f"{path} never showed an outcome during the run"
        if path.endswith("broken.pdf"):
            assert ends[0][0] == "Failed" and "\n" in ends[0][1], ends[0]
        else:
            assert ends[0][0] == "Indexed"
    # an estimate as soon as a file has been read, not after some count of files
    read = [e for e in events if isinstance(e, Progress) and e.outcome and e.outcome["state"] == "indexed"]
    assert read and read[0].eta is not None and read[0].files_done < read[0].files_total
    # after the run, no file is left queued
    qtbot.waitUntil(lambda: model.rowCount() == FILES + 1, timeout=10_000)
    assert "Queued" not in {model.index(r, 1).data() for r in range(model.rowCount())}


def test_the_eta_is_given_after_the_first_files_by_bytes_read(qtbot):
    # 13 of 17 files: 12 were unchanged in a blink, one was read (100 of 300 bytes in 1.5 s)
    event = Progress(13, 17, 4, "/docs/report.pdf", 1.8, bytes_done=100, bytes_total=300, read_elapsed=1.5)
    assert event.eta == 3.0
    assert Progress(12, 17, 0, "/docs/a.txt", 0.2, bytes_total=300).eta is None  # nothing read yet
    assert Progress(3, 4, 0, "/docs/a.txt", 0.3).eta is not None  # nothing to read: by files
    widget = IndexProgressWidget()
    qtbot.addWidget(widget)
    widget.begin("docs")
    widget.update_progress(13, 17, 4, event.current, event.elapsed, event.eta)
    assert "3 s left" in widget.label.text(), widget.label.text()
    widget.update_progress(1, 1, 1, "/docs/a.txt", 0.5, None)
    assert widget.bar.text() == "1 / 1 file"


def test_counts_are_written_in_the_singular_for_one(qtbot):
    status = StatusBarWidget()
    qtbot.addWidget(status)
    status.set_stats({"documents": 1, "chunks": 1})
    assert status.counts.text() == "1 document · 1 chunk"
    status.set_stats({"documents": 2, "chunks": 1204})
    assert status.counts.text() == "2 documents · 1,204 chunks"


def test_document_names_take_the_room_on_one_line(qtbot):
    library = LibraryWidget()
    qtbot.addWidget(library)
    library.resize(300, 600)  # the library's share of a 1024-px window
    library.show()
    qtbot.waitExposed(library)
    table = library.table
    header = table.horizontalHeader()
    assert header.sectionResizeMode(0) == QHeaderView.Stretch
    assert not table.wordWrap(), "names wrap onto a second line"
    assert table.textElideMode() == Qt.ElideMiddle  # the start and the extension stay
    long_name = "/docs/quarterly-financial-statement-for-the-board-2024.pdf"
    library.set_documents([{"path": long_name, "state": "indexed", "reason": None, "pages": 3, "chunks": 9},
                           {"path": "/docs/b.pdf", "state": "stale", "reason": None, "pages": None, "chunks": 0}])
    qtbot.wait(50)
    assert header.sectionSize(0) > header.sectionSize(1), "the State column takes the room"
    row = library.model.paths().index(long_name)
    assert library.model.index(row, 0).data(Qt.ToolTipRole).startswith(long_name)
