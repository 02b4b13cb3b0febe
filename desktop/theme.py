"""Light and dark, following the system; the application icon; a font that exists."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication

from .style import style_sheet

ASSETS = Path(__file__).resolve().parents[1] / "assets"
ICON = ASSETS / "icon.svg"
FALLBACK_FONTS = ("DejaVu Sans", "Noto Sans", "Liberation Sans", "Cantarell")
# Flags and most emoji exist only in a colour emoji font; without one Qt draws boxes. It comes
# from the system (fonts-noto-color-emoji, installed by `make run`/`make test`, see README).
EMOJI_FONTS = ("Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji", "JoyPixels")


def app_icon() -> QIcon:
    return QIcon(str(ICON))


ACCENT = QColor(47, 111, 219)  # selection: white text on it reads at 4.7:1 (WCAG AA)


def light_palette(app: QApplication) -> QPalette:
    """Fusion's light palette with the same accent as the dark one (Fusion's own is 3.7:1)."""
    palette = app.style().standardPalette()
    palette.setColor(QPalette.Highlight, ACCENT)
    palette.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    return palette


def dark_palette() -> QPalette:
    palette = QPalette()
    base, window, text = QColor(30, 32, 36), QColor(40, 43, 48), QColor(225, 228, 232)
    palette.setColor(QPalette.Window, window)
    palette.setColor(QPalette.WindowText, text)
    palette.setColor(QPalette.Base, base)
    palette.setColor(QPalette.AlternateBase, window)
    palette.setColor(QPalette.Text, text)
    palette.setColor(QPalette.Button, window)
    palette.setColor(QPalette.ButtonText, text)
    palette.setColor(QPalette.ToolTipBase, base)
    palette.setColor(QPalette.ToolTipText, text)
    palette.setColor(QPalette.PlaceholderText, QColor(140, 144, 150))
    palette.setColor(QPalette.Highlight, ACCENT)
    palette.setColor(QPalette.HighlightedText, QColor(255, 255, 255))
    palette.setColor(QPalette.Link, QColor(110, 160, 255))
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        palette.setColor(QPalette.Disabled, role, QColor(120, 124, 130))
    return palette


def apply_theme(app: QApplication) -> None:
    """Fusion, with the system's colour scheme; follows it when it changes."""
    app.setStyle("Fusion")
    _ensure_font(app)
    _apply_scheme(app)
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged") and not getattr(app, "_enclave_theme_hooked", False):
        hints.colorSchemeChanged.connect(lambda scheme: _apply_scheme(app, scheme))
        app._enclave_theme_hooked = True


def _apply_scheme(app: QApplication, scheme: Qt.ColorScheme | None = None) -> None:
    """The scheme the change signal carries, else the one the system reports now."""
    if scheme is None:
        scheme = QGuiApplication.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        app.setPalette(dark_palette())
    else:
        app.setPalette(light_palette(app))
    app.setStyleSheet(style_sheet(app.palette()))  # its colours are fixed when set: rebuild


def emoji_font() -> str | None:
    """The colour emoji family installed here, if any."""
    families = set(QFontDatabase.families())
    return next((f for f in EMOJI_FONTS if f in families), None)


def _ensure_font(app: QApplication) -> None:
    """Offscreen and minimal desktops may resolve the default family to nothing readable."""
    families = set(QFontDatabase.families())
    font = QFont(app.font())
    if font.family() not in families:
        family = next((f for f in FALLBACK_FONTS if f in families), None)
        if family is not None:
            font = QFont(family, 10)
    # The emoji font is not added to the font's family list: Qt then takes spaces and digits
    # from it (emoji fonts carry keycap digits), which spread "What is 42" to 1.4 times its
    # width. Installed, it is found by the system's fallback for the emoji alone.
    app.setFont(font)
