"""The window's look: one style sheet built from the palette in use (light or dark), and the
colours the chat's message blocks and the source cards draw with.

Qt resolves a style sheet's colours once, when it is set, so the sheet is rebuilt whenever
the system's scheme changes (theme._apply_scheme). Only named widgets and widget classes get
backgrounds: a blanket `QWidget { background }` would override the palette the rest of the
window (and its contrast test) relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette

RADIUS = 8
SPACE = 8  # the rhythm: margins and gaps are multiples of it


@dataclass(frozen=True)
class Tones:
    """The few colours beyond the palette's roles, for the scheme in use."""

    dark: bool
    accent: QColor
    user_block: QColor     # the question's background
    quote_block: QColor    # the verbatim sentence from the documents
    quote_edge: QColor
    warning_block: QColor  # "No source supports this answer"
    warning_text: QColor
    refusal_block: QColor  # "The sources cannot answer…"
    card: QColor
    card_edge: QColor
    muted: QColor
    badge: dict[str, QColor]


def tones(palette: QPalette) -> Tones:
    dark = palette.color(QPalette.Window).lightness() < 128
    accent = palette.color(QPalette.Highlight)
    if dark:
        return Tones(True, accent, QColor(45, 56, 78), QColor(44, 47, 54), QColor(110, 160, 255),
                     QColor(74, 56, 20), QColor(255, 214, 140), QColor(48, 52, 60),
                     QColor(38, 41, 46), QColor(62, 66, 74), QColor(160, 165, 172), _badges(True))
    return Tones(False, accent, QColor(231, 239, 253), QColor(244, 246, 249), QColor(47, 111, 219),
                 QColor(255, 243, 214), QColor(122, 78, 0), QColor(240, 241, 244),
                 QColor(255, 255, 255), QColor(218, 221, 226), QColor(95, 100, 108), _badges(False))


def _badges(dark: bool) -> dict[str, QColor]:
    """A colour per file family, so a card's kind reads at a glance (text is white on it)."""
    shade = 0.8 if dark else 1.0
    base = {"pdf": (196, 54, 48), "doc": (43, 87, 170), "sheet": (30, 125, 70), "slides": (200, 90, 30),
            "text": (90, 98, 110), "mail": (120, 70, 160), "web": (20, 120, 140), "image": (150, 100, 40)}
    return {k: QColor(int(r * shade), int(g * shade), int(b * shade)) for k, (r, g, b) in base.items()}


def style_sheet(palette: QPalette) -> str:
    t = tones(palette)
    window = palette.color(QPalette.Window).name()
    base = palette.color(QPalette.Base).name()
    text = palette.color(QPalette.Text).name()
    mid = (QColor(70, 74, 82) if t.dark else QColor(206, 210, 216)).name()
    hover = (QColor(58, 62, 70) if t.dark else QColor(232, 235, 240)).name()
    accent = t.accent.name()
    accent_hover = t.accent.lighter(112).name()
    return f"""
QSplitter::handle {{ background: {window}; }}
QSplitter::handle:horizontal {{ width: 6px; }}
QSplitter::handle:vertical {{ height: 6px; }}

QPushButton {{
    border: 1px solid {mid}; border-radius: {RADIUS - 2}px; padding: 4px 10px;
    background: {base}; color: {text}; min-height: 20px;
}}
QPushButton:hover {{ background: {hover}; }}
QPushButton:disabled {{ color: {t.muted.name()}; }}
QPushButton#sendButton, QPushButton[primary="true"] {{
    background: {accent}; color: white; border: 1px solid {accent}; font-weight: 600;
}}
QPushButton#sendButton:hover, QPushButton[primary="true"]:hover {{ background: {accent_hover}; }}

QListWidget, QTreeView, QTableView, QTextEdit, QPlainTextEdit, QTextBrowser, QLineEdit {{
    border: 1px solid {mid}; border-radius: {RADIUS - 2}px; background: {base};
}}
QTextBrowser#chatView {{ border: none; padding: {SPACE}px; }}
QPlainTextEdit#chatInput {{ border-radius: {RADIUS}px; padding: 4px; }}
QPlainTextEdit#chatInput:focus {{ border: 1px solid {accent}; }}
QHeaderView::section {{
    background: {window}; border: none; border-bottom: 1px solid {mid}; padding: 4px 6px;
}}

QLabel[heading="true"] {{
    color: {t.muted.name()}; font-size: 9pt; font-weight: 600; letter-spacing: 0.5px;
    padding-top: {SPACE // 2}px;
}}
QLabel#chatStatus, QLabel#sourceTitle {{ color: {t.muted.name()}; }}

QWidget#chatEmptyState {{ background: {base}; border-radius: {RADIUS}px; }}
QWidget#chatEmptyState QLabel#emptyTitle {{ font-size: 16pt; font-weight: 600; }}
QWidget#chatEmptyState QLabel#emptyBody {{ color: {t.muted.name()}; font-size: 10.5pt; }}
QPushButton#tryQuestion {{
    border: 1px solid {accent}; color: {accent}; background: transparent; border-radius: 14px;
    padding: 5px 14px;
}}
QPushButton#tryQuestion:hover {{ background: {t.user_block.name()}; }}

QListWidget#sourceCards {{ border: none; background: transparent; }}
QToolButton#closeSource {{ border: none; padding: 2px 6px; }}
QToolButton#closeSource:hover {{ background: {hover}; border-radius: 4px; }}

QScrollBar:vertical {{ width: 10px; background: transparent; margin: 0; }}
QScrollBar:horizontal {{ height: 10px; background: transparent; margin: 0; }}
QScrollBar::handle {{ background: {mid}; border-radius: 3px; margin: 2px; }}
QScrollBar::handle:vertical {{ min-height: 24px; }}
QScrollBar::handle:horizontal {{ min-width: 24px; }}
QScrollBar::handle:hover {{ background: {t.muted.name()}; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}

QStatusBar {{ border-top: 1px solid {mid}; }}
QStatusBar QLabel {{ color: {t.muted.name()}; }}
QProgressBar {{ border: 1px solid {mid}; border-radius: 4px; background: {base}; text-align: center; }}
QProgressBar::chunk {{ background: {accent}; border-radius: 3px; }}
QMenuBar {{ background: {window}; }}
"""
