"""Reading text from pictures of pages: scanned PDF pages and image files (PNG, JPEG, TIFF).

RapidOCR runs PP-OCR's detection, orientation and recognition models with onnxruntime; the
three model files ship inside its PyPI package and are loaded by path, so nothing is ever
fetched. The models read Latin scripts (English, French, German, Spanish, Italian,
Portuguese and more) and Chinese. Each recognised word keeps its box, in fractions of the
page as it is shown, so the window can highlight a cited passage on the page image.

Pages turned by a quarter or a half turn are read upright: a page whose lines run
vertically is turned a quarter and read again, and one whose lines the orientation model
finds upside down is turned a half turn. Lines are put in reading order by cutting the page
at its widest gaps (recursive XY-cut), so two columns read one after the other.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...errors import FileSkipped, FileUnreadable
from ...types import LoadedDocument, PageText
from .common import LoadContext, detail

# Pages are rendered at 200 dpi, and never larger than this on their long side: enough for
# 8-point print, and within the reader's memory limit.
RENDER_DPI = 200
MAX_SIDE = 2200
# Text detection looks at a smaller copy; recognition reads the lines at full size.
DETECT_SIDE = 1280
OCR_OFF = "images are read by OCR, which is turned off in Settings"

# onnxruntime 1.29 and later carry Microsoft's telemetry uploader on Linux and macOS: the
# runtime's environment, created by `import onnxruntime`, queues an event (OS, CPU, memory,
# a device id it stores under ~/.cache/Microsoft) and sends it to
# mobile.events.data.microsoft.com about 9 s later, so any reader that OCRs for longer
# looked that host up. disable_telemetry_events() does not stop that event; this variable,
# read when the environment is created, keeps the uploader from starting at all. Set on
# import of this module, before rapidocr can load onnxruntime, and forced: the promise
# does not depend on the user's environment.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

Word = tuple[int, int, float, float, float, float]


def render_scale(width_pt: float, height_pt: float) -> float:
    """pypdfium2's scale (pixels per point) for a page of this size."""
    return min(RENDER_DPI / 72, MAX_SIDE / max(width_pt, height_pt, 1.0))


@lru_cache(maxsize=1)
def _engine():
    try:
        import rapidocr
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - an install without the OCR package
        raise FileUnreadable(f"OCR is not installed ({detail(exc)}); run the install command again") from exc
    models = Path(rapidocr.__file__).parent / "models"
    files = {
        "Det": models / "PP-OCRv6_det_small.onnx",
        "Rec": models / "PP-OCRv6_rec_small.onnx",
        "Cls": models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }
    missing = [f.name for f in files.values() if not f.is_file()]
    if missing:
        raise FileUnreadable(f"the OCR models are missing ({', '.join(missing)}); run the install command again")
    threads = int(os.environ.get("ENCLAVE_OCR_THREADS", "0")) or max(1, os.cpu_count() or 1)
    params = {
        "Global.log_level": "error",
        "Global.max_side_len": MAX_SIDE,
        "Det.limit_type": "max",
        "Det.limit_side_len": DETECT_SIDE,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    # An explicit model path for each model: RapidOCR then never looks for a download.
    params.update({f"{task}.model_path": str(path) for task, path in files.items()})
    return RapidOCR(params=params)


@dataclass
class _Line:
    text: str
    score: float
    x0: float  # bounds used for reading order (straightened when the page is skewed)
    y0: float
    x1: float
    y1: float
    words: list[tuple[str, tuple[float, float, float, float]]]  # (word, box) in image pixels
    corners: tuple = ()  # the four corners OCR found, clockwise from the top left
    box: tuple = ()  # the line's box in image pixels, as found


def read_image(image) -> tuple[str, tuple[Word, ...]]:
    """Text of a page image (a BGR numpy array) in reading order, and its words' boxes."""
    import numpy as np

    turns = 0
    lines = _recognise(image)
    if lines and _mostly_vertical(lines):
        turns = 1
        lines = _recognise(np.rot90(image, 1))
    if lines and _upside_down(np.rot90(image, turns), lines):
        turns += 2
        lines = _recognise(np.rot90(image, turns))
    if not lines:
        return "", ()
    height, width = np.rot90(image, turns).shape[:2]
    return _compose(_reading_order(lines), width, height, turns)


def _recognise(image) -> list[_Line]:
    import numpy as np

    image = np.ascontiguousarray(image)
    # Every step named each time: RapidOCR remembers the last call's choices.
    out = _engine()(image, use_det=True, use_cls=True, use_rec=True, return_word_box=True)
    if not out.txts:
        return []
    words = out.word_results if out.word_results and len(out.word_results) == len(out.txts) else None
    lines = []
    for i, (box, text, score) in enumerate(zip(out.boxes, out.txts, out.scores)):
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        line_box = (min(xs), min(ys), max(xs), max(ys))
        line_words = []
        for item in (words[i] if words else ()):
            word, _, wbox = item
            if wbox is not None and word.strip():
                wx, wy = [p[0] for p in wbox], [p[1] for p in wbox]
                line_words.append((word, (min(wx), min(wy), max(wx), max(wy))))
        corners = tuple((float(x), float(y)) for x, y in box)
        lines.append(_Line(text, float(score), *line_box, line_words, corners, line_box))
    return lines


def _mostly_vertical(lines: Sequence[_Line]) -> bool:
    """Lines that run down the page: it is turned a quarter."""
    vertical = sum(len(l.text) for l in lines if (l.y1 - l.y0) > 1.5 * (l.x1 - l.x0))
    return vertical > 0.5 * sum(len(l.text) for l in lines)


def _upside_down(image, lines: Sequence[_Line]) -> bool:
    """The orientation model's vote over the widest lines of the page."""
    engine = _engine()
    votes = {"0": 0, "180": 0}
    for line in sorted(lines, key=lambda l: l.x1 - l.x0, reverse=True)[:8]:
        crop = image[int(line.y0):int(line.y1) + 1, int(line.x0):int(line.x1) + 1]
        if crop.size == 0 or crop.shape[1] < 2 * crop.shape[0]:
            continue
        result = engine(crop, use_det=False, use_cls=True, use_rec=False)
        for label, score in getattr(result, "cls_res", None) or ():
            if score >= 0.9 and label in votes:
                votes[label] += 1
    return votes["180"] > votes["0"]


def _straightened(lines: list[_Line]) -> list[_Line]:
    """Lines of a page scanned askew, turned level (their median slope undone): ordering by
    bounds assumes level lines, and a tilted line's bounds overlap its neighbours'."""
    import math
    from dataclasses import replace

    slopes = sorted(
        math.atan2(l.corners[1][1] - l.corners[0][1], l.corners[1][0] - l.corners[0][0])
        for l in lines if len(l.corners) == 4 and (l.x1 - l.x0) > 3 * (l.y1 - l.y0)
    )
    if not slopes:
        return lines
    angle = slopes[len(slopes) // 2]
    if abs(angle) < math.radians(0.3):
        return lines
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for line in lines:
        points = [(x * cos + y * sin, -x * sin + y * cos) for x, y in line.corners] or [(line.x0, line.y0), (line.x1, line.y1)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        out.append(replace(line, x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys)))
    return out


def _reading_order(lines: list[_Line]) -> list[list[_Line]]:
    """Blocks of lines in reading order: the page is cut at its widest gap, down or across,
    again and again (recursive XY-cut); a cut down the page needs two lines on each side.
    Two columns read one after the other; a table whose columns are far apart reads column
    by column."""
    lines = _straightened(lines)
    heights = sorted(l.y1 - l.y0 for l in lines)
    line_height = heights[len(heights) // 2] or 1.0

    def widest_gap(group, start, end):
        ordered = sorted(group, key=lambda l: getattr(l, start))
        best, reach = (0.0, None), getattr(ordered[0], end)
        for line in ordered[1:]:
            gap = getattr(line, start) - reach
            if gap > best[0]:
                best = (gap, (reach + getattr(line, start)) / 2)
            reach = max(reach, getattr(line, end))
        return best

    def cut(group):
        if len(group) < 2:
            return [group]
        across, at_y = widest_gap(group, "y0", "y1")
        down, at_x = widest_gap(group, "x0", "x1")
        # A gutter half a line wide splits columns, unless a gap across the page (a new
        # section) is wider still.
        if at_x is not None and down >= 0.5 * line_height and (down >= across or across < 2 * line_height):
            left = [l for l in group if (l.x0 + l.x1) / 2 < at_x]
            right = [l for l in group if (l.x0 + l.x1) / 2 >= at_x]
            if len(left) >= 2 and len(right) >= 2:
                return cut(left) + cut(right)
        if at_y is not None and across >= 0.5 * line_height:
            return cut([l for l in group if (l.y0 + l.y1) / 2 < at_y]) + cut(
                [l for l in group if (l.y0 + l.y1) / 2 >= at_y])
        return [group]

    return cut(lines)


def _rows(block: list[_Line]) -> list[list[_Line]]:
    """Lines side by side (table cells) form one row, read left to right."""
    rows: list[list[_Line]] = []
    for line in sorted(block, key=lambda l: (l.y0 + l.y1) / 2):
        middle = (line.y0 + line.y1) / 2
        if rows and rows[-1][0].y0 <= middle <= rows[-1][0].y1:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda l: l.x0) for row in rows]


def _compose(blocks, width: int, height: int, turns: int) -> tuple[str, tuple[Word, ...]]:
    parts: list[str] = []
    words: list[Word] = []
    pos = 0

    def add(text: str) -> None:
        nonlocal pos
        parts.append(text)
        pos += len(text)

    for b, block in enumerate(blocks):
        if b:
            add("\n\n")
        for r, row in enumerate(_rows(block)):
            if r:
                add("\n")
            for c, line in enumerate(row):
                if c:
                    add(" ")
                start = pos
                add(line.text)
                found = False
                cursor = 0
                for word, box in line.words:
                    at = line.text.find(word, cursor)
                    if at < 0:
                        continue
                    cursor = at + len(word)
                    words.append((start + at, start + cursor, *_unturn(box, width, height, turns)))
                    found = True
                if not found:  # no word boxes: the line's box stands for all of it
                    words.append((start, pos, *_unturn(line.box, width, height, turns)))
    return "".join(parts), tuple(words)


def _unturn(box, width: int, height: int, turns: int) -> tuple[float, float, float, float]:
    """A box found on the page turned `turns` quarter turns anticlockwise (numpy's rot90),
    in fractions of the page as it is shown."""
    x0, y0, x1, y1 = box
    corners = [(x0 / width, y0 / height), (x1 / width, y1 / height)]
    for _ in range(turns % 4):  # undo one anticlockwise quarter turn: (u, v) -> (1 - v, u)
        corners = [(1 - v, u) for u, v in corners]
    us, vs = [c[0] for c in corners], [c[1] for c in corners]
    return tuple(round(min(max(value, 0.0), 1.0), 4) for value in (min(us), min(vs), max(us), max(vs)))


# --- image files ---------------------------------------------------------------------


def load_image(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    """PNG, JPEG and TIFF (every frame of a multi-page TIFF is a page), read by OCR."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        picture = Image.open(io.BytesIO(data))
        frames = getattr(picture, "n_frames", 1)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise FileUnreadable(f"not a readable image (it may be damaged or mislabeled): {detail(exc)}") from exc
    if not context.ocr:
        error = FileSkipped(OCR_OFF)
        error.page_count = frames
        raise error
    import numpy as np

    pages = []
    for index in range(frames):
        context.on_ocr_page(index + 1, frames)
        picture.seek(index)
        # EXIF orientation first: a phone photo of a page is shown as the phone held it.
        frame = ImageOps.exif_transpose(picture).convert("RGB")
        scale = MAX_SIDE / max(frame.size)
        if scale < 1:
            frame = frame.resize((round(frame.width * scale), round(frame.height * scale)))
        text, words = read_image(np.asarray(frame)[:, :, ::-1])  # RGB to the BGR order OCR expects
        pages.append(PageText(number=index + 1, text=text, words=words))
    return LoadedDocument(path=str(path), kind="image", pages=pages, page_count=frames)


def read_pdf_pages(data: bytes, password: str | None, numbers: Sequence[int], context: LoadContext,
                   page_count: int) -> dict[int, tuple[str, tuple[Word, ...]]]:
    """OCR of the given PDF pages (1-based), rendered by pdfium as a viewer shows them."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as exc:
        context.warnings.append(f"scanned pages could not be rendered for OCR ({detail(exc)})")
        return {}
    out = {}
    try:
        for number in numbers:
            context.on_ocr_page(number, page_count)
            try:
                page = document[number - 1]
                bitmap = page.render(scale=render_scale(*page.get_size()))
                out[number] = read_image(bitmap.to_numpy()[:, :, :3])  # pdfium draws BGR, as OCR expects
                page.close()
            except Exception as exc:  # one page that cannot be rendered costs that page
                if "bad_alloc" in str(exc):  # onnxruntime out of memory: the reader's limit, not damage
                    raise MemoryError(str(exc)) from exc
                context.warnings.append(f"page {number}: could not be read by OCR ({detail(exc)})")
    finally:
        document.close()
    return out
