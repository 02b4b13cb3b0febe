"""The status bar: the model in use, GPU or CPU, what is indexed, and the privacy promise."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QLabel, QStatusBar

from .theme import app_icon
from .words import counted

PRIVACY = "Offline: nothing leaves this machine"
PRIVACY_TIP = "Enclave makes no network connections: documents, questions and answers stay here."


class StatusBarWidget(QStatusBar):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = QLabel("Model: loading…")
        self.model.setObjectName("statusModel")
        self.model.setAccessibleName("Model in use")
        self.device = QLabel("")
        self.device.setObjectName("statusDevice")
        self.counts = QLabel("")
        self.counts.setObjectName("statusCounts")
        self.team = QLabel("")
        self.team.setObjectName("statusTeam")
        self.team.setAccessibleName("Team servers in use")
        self.team.hide()
        self.privacy_icon = QLabel()
        self.privacy_icon.setPixmap(app_icon().pixmap(16, 16))
        self.privacy = QLabel(PRIVACY)
        self.privacy.setObjectName("statusPrivacy")
        self.privacy.setToolTip(PRIVACY_TIP)
        self.addWidget(self.model)
        self.addWidget(self.device)
        self.addWidget(self.counts)
        self.addPermanentWidget(self.team)
        self.addPermanentWidget(self.privacy_icon)
        self.addPermanentWidget(self.privacy)

    def set_model(self, info: dict | None, problem: str | None = None) -> None:
        if problem:
            self.model.setText("Model: not loaded")
            self.model.setToolTip(problem)
            self.device.setText("")
            return
        where = info.get("where") or "this machine"
        if info.get("endpoint"):  # a team's model server
            name = Path(info.get("model") or "").stem or "server model"
            self.model.setText(f"Model: {name} on {where}")
            self.model.setToolTip(info["endpoint"])
            self.device.setText("")
            self.privacy.setText(f"Answers generated on {where}, the only address Enclave contacts")
            self.privacy.setToolTip(
                f"Questions, the passages found for them and recent turns go to {where}; "
                "documents and the index stay on this machine.")
            return
        path = Path(info["path"])
        self.model.setText(f"Model: {path.stem}")
        self.model.setToolTip(str(path))
        self.device.setText("GPU" if info.get("gpu_layers") else "CPU")
        self.privacy.setText(PRIVACY)
        self.privacy.setToolTip(PRIVACY_TIP)

    def set_stats(self, stats: dict) -> None:
        self.counts.setText(f"{counted(stats.get('documents', 0), 'document')} · "
                            f"{counted(stats.get('chunks', 0), 'chunk')}")

    def set_team(self, hosts: list[str], problem: str | None = None) -> None:
        """Name the team servers in use (none: hidden); a problem reaching them goes in the tip."""
        if not hosts:
            self.team.hide()
            return
        where = ", ".join(hosts)
        self.team.setText(f"Team: {where}" + (" (unreachable)" if problem else ""))
        self.team.setToolTip(problem or f"Team collections (team:NAME) are stored on {where} and go nowhere else; "
                             "documents in local collections never leave this machine.")
        self.team.show()
