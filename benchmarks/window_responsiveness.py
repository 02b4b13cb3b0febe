"""How responsive the desktop window is: launch time and the longest event-loop stalls.

Prints JSON (and writes it with --out):
- launch_to_usable_ms: from process start to the window shown with its event loop turning
  (a zero-timer fired after show); models load in the background after that;
- model_ready_ms: from process start until the answering model is loaded;
- stall_launch_to_first_answer_ms: the largest gap between two ticks of a 10 ms timer started
  the moment the window is created, through the engine's start, the model's load, the welcome
  guide's indexing and a first question about the guide answered in full (first_answer: when
  its first piece showed and when it finished, from process start);
- stall_while_indexing_ms: the largest gap between two ticks of a 10 ms timer on the UI thread
  while the whole folder is indexed (default ../shared/corpus/pdf);
- stall_while_answering_ms: the same while one question is answered;
- quote_shown_ms / first_piece_shown_ms: from asking to the quote on screen, and to the
  model's first piece on screen.
Nothing here passes or fails on time.

    QT_QPA_PLATFORM=offscreen python benchmarks/window_responsiveness.py --out benchmarks/results/window.json
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class StallProbe:
    def __init__(self, interval_ms: int = 10):
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._on_tick)
        self.last = None
        self.gaps: list[float] = []
        self.worst_at = None

    def _on_tick(self):
        if DIAGNOSE:  # a C watchdog dumps every thread's stack if the next tick is late
            import faulthandler

            faulthandler.dump_traceback_later(DIAGNOSE, exit=False, file=DIAGNOSE_FILE)
        now = time.perf_counter()
        if self.last is not None:
            gap = (now - self.last) * 1000
            if not self.gaps or gap > max(self.gaps):
                self.worst_at = self.last - self.started
            self.gaps.append(gap)
        self.last = now

    def start(self):
        self.last = None
        self.gaps = []
        self.started = time.perf_counter()
        self.worst_at = None
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        gaps = sorted(self.gaps)
        return {
            "max_ms": round(gaps[-1], 1) if gaps else None,
            "p99_ms": round(gaps[int(len(gaps) * 0.99)], 1) if gaps else None,
            "over_50ms": sum(g > 50 for g in gaps),
            "worst_starts_at_s": round(self.worst_at, 2) if self.worst_at is not None else None,
            "ticks": len(gaps),
        }


def wait_for(app, predicate, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


GC_PAUSES: list[tuple[int, float]] = []
DIAGNOSE = 0.0  # seconds; --diagnose
DIAGNOSE_FILE = None


def _track_gc() -> None:
    import gc

    started = {}

    def callback(phase, info):
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            GC_PAUSES.append((info["generation"], (time.perf_counter() - started.pop("t")) * 1000))

    gc.callbacks.append(callback)


def main() -> None:
    _track_gc()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(ROOT.parent / "shared" / "corpus" / "pdf"))
    parser.add_argument("--question", action="append",
                        help="asked in turn until one is answered rather than refused (repeatable)")
    parser.add_argument("--out")
    parser.add_argument("--diagnose", metavar="FILE",
                        help="write every thread's stack here whenever a tick is over 60 ms late")
    args = parser.parse_args()
    if args.diagnose:
        global DIAGNOSE, DIAGNOSE_FILE
        DIAGNOSE, DIAGNOSE_FILE = 0.07, open(args.diagnose, "w")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QTimer

    from desktop.app import create_main_window

    with tempfile.TemporaryDirectory(prefix="enclave-window-bench-") as data_dir:
        window = create_main_window(data_dir)
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        launch = StallProbe()
        launch.start()  # from the window's creation to the first streamed answer
        usable, model, welcomed = {}, {}, {}
        window.model_loaded.connect(lambda info: model.setdefault("t", time.perf_counter()))
        window.show()
        QTimer.singleShot(0, lambda: usable.setdefault("t", time.perf_counter()))
        wait_for(app, lambda: "t" in usable, 10)
        launch_ms = (usable["t"] - PROCESS_START) * 1000

        wait_for(app, lambda: "t" in model, 120)
        model_ms = (model["t"] - PROCESS_START) * 1000
        wait_for(app, lambda: not window.client.pending("welcome") and not window.client.pending("index"), 300)
        welcomed["t"] = time.perf_counter()
        wait_for(app, lambda: window._collection == "Welcome", 30)  # a first run shows the guide
        first = {}
        window.worker.progress.connect(lambda job, value: isinstance(value, str) and first.setdefault("piece", time.perf_counter()))
        window.answer_finished.connect(lambda answer: first.setdefault("answer", answer) and first.setdefault("t", time.perf_counter()))
        asked_at = time.perf_counter()
        window.ask("How do I add documents to Enclave?")  # the welcome guide answers it
        wait_for(app, lambda: "t" in first, 300)
        startup = launch.stop()
        first_answer = {
            "asked_at_ms": round((asked_at - PROCESS_START) * 1000, 1),
            "first_piece_ms": round((first["piece"] - PROCESS_START) * 1000, 1) if "piece" in first else None,
            "finished_ms": round((first["t"] - PROCESS_START) * 1000, 1) if "t" in first else None,
            "welcome_indexed_ms": round((welcomed["t"] - PROCESS_START) * 1000, 1),
            "refused": first["answer"]["refused"] if "answer" in first else None,
        }

        probe = StallProbe()
        reports = []
        window.indexing_finished.connect(reports.append)
        probe.start()
        started = time.perf_counter()
        window.add_paths([args.folder])
        wait_for(app, lambda: bool(reports), 1800)
        index_s = time.perf_counter() - started
        indexing = probe.stop()

        # The answering probe needs an answer the model writes (a refusal never calls it). With the
        # whole corpus in one collection the retriever refuses these questions (reported), so the
        # question goes to a collection holding the one PDF that answers it.
        from desktop import jobs

        window._library_change(jobs.create_collection("Answering"), select="Answering")
        wait_for(app, lambda: window._collection == "Answering", 30)
        window.add_paths([str(Path(args.folder) / "026-latex-multicolumn" / "multicolumn.pdf")])
        wait_for(app, lambda: len(reports) >= 2, 300)
        answers = []
        window.answer_finished.connect(answers.append)
        questions = args.question or ["What is the capital of Denmark?", "Which countries are in the EU countries table?",
                                      "What is the population of Austria?"]
        asked = []
        for question in questions:  # a refusal never calls the model: not a fair probe
            answers.clear()
            marks: dict[str, float] = {}

            def answered() -> bool:
                # When the chat first shows the quote, and the model's first piece.
                message = window.chat._messages[-1] if window.chat._messages else {}
                now = time.perf_counter()
                if message.get("quote") and "quote" not in marks:
                    marks["quote"] = now
                if message.get("role") == "assistant" and message.get("text") and "first_piece" not in marks:
                    marks["first_piece"] = now
                return bool(answers)

            probe.start()
            asked_at = time.perf_counter()
            window.ask(question)
            wait_for(app, answered, 300)
            answering = probe.stop()
            asked.append({"question": question, "refused": answers[0]["refused"] if answers else None,
                          **{f"{k}_shown_ms": round((v - asked_at) * 1000, 1) for k, v in marks.items()}})
            if answers and not answers[0]["refused"]:
                break

        # idle: the same probe with nothing running, as the floor to compare with
        probe.start()
        end = time.perf_counter() + 2
        wait_for(app, lambda: time.perf_counter() > end, 5)
        idle = probe.stop()
        window.close()

    report = reports[0]
    result = {
        "benchmark": "window_responsiveness",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "qpa": os.environ.get("QT_QPA_PLATFORM")},
        "launch_to_usable_ms": round(launch_ms, 1),
        "model_ready_ms": round(model_ms, 1),
        "folder": args.folder,
        "indexing": {"seconds": round(index_s, 1), "indexed": report["indexed"], "failed": len(report["failed"]),
                     "skipped": len(report["skipped"]), "chunks": report["chunks_added"]},
        "stall_launch_to_first_answer_ms": startup["max_ms"],
        "first_answer": first_answer,
        "stall_while_indexing_ms": indexing["max_ms"],
        "stall_while_answering_ms": answering["max_ms"],
        "probes": {"launch_to_first_answer": startup, "indexing": indexing, "answering": answering, "idle": idle},
        "asked": asked,
        # from the question to the quote on screen, and to the model's first piece on screen
        "quote_shown_ms": asked[-1].get("quote_shown_ms") if asked else None,
        "first_piece_shown_ms": asked[-1].get("first_piece_shown_ms") if asked else None,
        "engine": "in its own process (desktop/engine_host.py); the gc figures are the window process's",
        "gc": {"collections": len(GC_PAUSES), "max_ms": round(max((p for _, p in GC_PAUSES), default=0), 1),
               "gen2": len([1 for g, _ in GC_PAUSES if g == 2])},
        "answer": {"refused": answers[0]["refused"], "timings": answers[0]["timings"]} if answers else None,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
