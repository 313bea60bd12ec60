"""Apple Watch ECG PDFs (Health app → "Export a PDF for your doctor") → `ECGRecord`.

The page is landscape: a header (name, birth date, classification, average heart rate, recorded date),
three strips of 10 s on a pink millimetre grid at 25 mm/s and 10 mm/mV, and a footer such as
``25 mm/s, 10 mm/mV, Lead I, 512Hz, iOS 17.1, watchOS 10.1, Watch5,1``. The waveform is vector line art,
so it is read back from the path points rather than from pixels:

* the trace is the stroked line art that is neither axis-aligned (grid lines, frames) nor small: the colour
  and line width with the most vertices;
* it is calibrated from the page itself: the millimetre from the grid pitch (1-mm or 5-mm lines), else from
  the first strip's width (10 s of paper), else 72/25.4 pt; speed and gain from the printed footer;
* strips are the trace's pieces grouped by height, read top to bottom, each continuing in time where the
  previous one ended, amplitudes measured from each strip's median (the isoelectric line);
* the points are resampled to a uniform grid at the printed sample rate (512 Hz when none is printed,
  flagged in ``meta["fs_assumed"]``).

Nothing depends on where our test PDFs happen to put things: no coordinates, page size or margins are
assumed. A page whose trace is an embedded raster is rendered and handed to the strip-image digitiser.
The header text goes into ``meta``; phrases holding the birth date are dropped unread and the name is
never matched by any field, so neither can reach a record, a log or an error message (errors never quote
the document).

Libraries: pdfplumber/pdfminer.six (MIT) read the paths and text and pypdfium2 (Apache-2.0/BSD) renders a
page. PyMuPDF would do both but is AGPL-3.0, unsuitable for a dependency of an Apache-2.0 package that
others embed. Rotated pages (``/Rotate``) are not supported: Apple writes a landscape media box.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from echopulse.ecg import ECGRecord, canonical_lead
from echopulse.errors import IngestError
from echopulse.ingest.recorded_date import parse_recorded_date
from echopulse.ingest.validate import check_file_size, check_sample_rate

SOURCE_FORMAT = "apple_watch_pdf"

MAX_PAGES = 20
"""An Apple export is one to three pages; more is not an ECG export and costs time to parse."""
MAX_PDF_BYTES = 64 * 2**20
"""A real export is about 100 kB; a larger PDF is a scan or something else."""
MAX_RENDER_PIXELS = 60_000_000
"""An A4 page at 300 dpi is 8.7 MP; a hostile page size must not allocate gigabytes."""

PT_PER_MM = 72 / 25.4
APPLE_MM_PER_S = 25.0
APPLE_MM_PER_MV = 10.0
APPLE_STRIP_S = 10.0
DEFAULT_FS = 512.0
IMAGE_DPI = 300

_MIN_TRACE_POINTS = 200
"""A 10-s strip at 512 Hz has 5120 vertices; a heart glyph, a logo or an underline has a few dozen."""
_MIN_GRID_LINES = 10
_STRIP_GAP_MM = 8.0
"""Pieces of trace whose median heights differ by more than this belong to different strips."""
_SCALE_TOLERANCE = 0.05
_PAGE_SCALED = 0.005
"""A first strip more than 0.5 % off 250 mm means the page was scaled; within it, rounding."""
_EOF_TAIL_BYTES = 2048

_IDENTITY = re.compile(
    r"birth|\bborn\b|\bDOB\b|geburt|naissance|nacimiento|nascita|nascimento|geboorte|生年月日|出生|생년월일|рожд",
    re.IGNORECASE,
)
_SPACE = r"[ \t]+"
"""Words of a result are on one line: a result never takes words from the next phrase."""
_RATE_LIMIT = rf"Heart{_SPACE}Rate{_SPACE}(?:Over|Above|Under|Below){_SPACE}\d{{2,3}}(?:[ \t]*BPM)?"
_REASON = rf"(?:Low|High){_SPACE}Heart{_SPACE}Rate|Poor{_SPACE}(?:Recording|Reading)|{_RATE_LIMIT}"
_CLASSIFICATION = re.compile(
    rf"(?<![\w-])(?P<value>Inconclusive(?:[ \t]*[:\-–—][ \t]*|{_SPACE})(?:{_REASON}|Other)|Inconclusive|"
    rf"Sinus{_SPACE}Rhythm|Atrial{_SPACE}Fibrillation|AFib|{_REASON}|Unreadable|Unrecognized|Unclassified)"
    r"(?![\w-])",
    re.IGNORECASE,
)
"""The ECG app's results in every phrasing Apple has printed (`Heart Rate Below 50`, `Heart Rate Under 50`,
`Low Heart Rate`, `Inconclusive: Poor Recording`, ...), anywhere in a phrase; the longest reading wins
(`Inconclusive: High Heart Rate`, not `Inconclusive`). Kept verbatim, never with what follows."""
_TIME = (
    r"\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?\s?[Mm]\.?)?(?:\s*(?:GMT|UTC)?\s*[+\-−]\s*\d{1,2}(?::?\d{2})?)?"
)
_NUMBER = r"\d+(?:[.,]\d+)?"
_FIELDS = {
    "recorded_date": re.compile(
        rf"Recorded(?:\s+on)?\s*:?\s*(?P<value>[^\n]{{0,40}}?{_TIME})", re.IGNORECASE
    ),
    "average_heart_rate": re.compile(
        r"(?P<value>\d{2,3})\s*BPM\s+Average|Average\s+(?:Heart\s+Rate\s*:?\s*)?(?P<value2>\d{2,3})\s*BPM",
        re.IGNORECASE,
    ),
    "sample_rate": re.compile(rf"(?<![\w.,])(?P<value>{_NUMBER})\s*(?:Hz|hertz)\b", re.IGNORECASE),
    "paper_speed": re.compile(rf"(?P<value>{_NUMBER})\s*mm/s\b", re.IGNORECASE),
    "gain": re.compile(rf"(?P<value>{_NUMBER})\s*mm/mV\b", re.IGNORECASE),
    "lead": re.compile(r"\bLead\s+(?P<value>III|II|I|aVR|aVL|aVF|V[1-6])\b"),
    "ios": re.compile(r"\biOS\s+(?P<value>\d+(?:\.\d+)*)"),
    "watchos": re.compile(r"\bwatchOS\s+(?P<value>\d+(?:\.\d+)*)", re.IGNORECASE),
    "device": re.compile(r"\b(?P<value>Watch\d+,\d+)\b"),
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_WORDY_DATE = re.compile(
    r"(?:(?P<mon1>[A-Za-z]{3,9})\.?\s+(?P<day1>\d{1,2}),?|(?P<day2>\d{1,2})\.?\s+(?P<mon2>[A-Za-z]{3,9})\.?,?)"
    r"\s+(?P<year>\d{4}),?\s+(?:at\s+)?(?P<time>\d{1,2}:\d{2}(?::\d{2})?)\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?)?"
    r"\s*(?P<tz>(?:GMT|UTC)\s*[+\-−]\s*\d{1,2}(?::?\d{2})?|[+\-−]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class _Path:
    """One stroked path: its vertices (x right, y down, in pt) and how it is stroked."""

    points: np.ndarray
    colour: tuple[float, float, float]
    width: float

    @property
    def style(self) -> tuple[tuple[float, float, float], float]:
        return self.colour, self.width

    @property
    def axis_aligned(self) -> bool:
        """Every segment horizontal or vertical: grid lines, frames, boxes; never a waveform."""
        steps = np.abs(np.diff(self.points, axis=0))
        return bool(np.all((steps[:, 0] < 0.01) | (steps[:, 1] < 0.01)))


@dataclass
class _Header:
    """What the page's text says, identity phrases already removed."""

    meta: dict[str, Any] = field(default_factory=dict)
    start: datetime | None = None
    fs: float = DEFAULT_FS
    mm_per_s: float = APPLE_MM_PER_S
    mm_per_mv: float = APPLE_MM_PER_MV
    lead: str = "I"
    device: str | None = None


@dataclass(frozen=True)
class _Scale:
    """Points per millimetre of paper, and how it was found."""

    pt_per_mm: float
    method: str


def read_apple_watch_pdf(path: str | Path) -> ECGRecord:
    """Read an Apple Watch ECG PDF into a single-lead record in mV at the printed sample rate.

    >>> record = read_apple_watch_pdf("ecg_2021-12-17.pdf")  # doctest: +SKIP
    >>> record.fs, record.leads, record.meta["trace_source"]
    (513.625, ('I',), 'vector paths')
    """
    source = _check_pdf_file(Path(path))
    with _open_pdf(source) as pdf:
        pages = _pages(source, pdf)
        parsed = [_parse_page(source, number, page) for number, page in enumerate(pages, start=1)]
        header = _read_header(source, [text for _, text in parsed])
        for number, (paths, _) in enumerate(parsed, start=1):
            trace = _trace_paths(paths)
            if trace:
                return _vector_record(source, number, paths, trace, header)
        for number, page in enumerate(pages, start=1):
            if page.images:
                return _image_record(source, number, page, header)
    where = "page 1" if len(pages) == 1 else f"pages 1–{len(pages)}"
    raise IngestError(source, "no ECG trace found: no waveform line art and no embedded image", where)


# ------------------------------------------------------------------------------------------ the file


def _check_pdf_file(path: Path) -> Path:
    """Refuse what is not a whole PDF before a parser sees it: wrong magic, no end marker, too large."""
    source = check_file_size(path)
    size = source.stat().st_size
    if size > MAX_PDF_BYTES:
        limit = MAX_PDF_BYTES // 2**20
        raise IngestError(source, f"PDF is {size / 2**20:.0f} MiB, over the {limit} MiB limit for a PDF")
    with source.open("rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, size - _EOF_TAIL_BYTES))
        tail = handle.read()
    if not head.startswith(b"%PDF-"):
        raise IngestError(source, "not a PDF: no %PDF- header")
    if b"%%EOF" not in tail:
        raise IngestError(source, "truncated PDF: no %%EOF end marker (the file was cut short)")
    return source


@contextmanager
def _open_pdf(source: Path) -> Iterator[Any]:
    """The document opened by pdfplumber, with parser failures turned into an `IngestError`."""
    import pdfplumber

    try:
        pdf = pdfplumber.open(source)
    except Exception as error:  # pdfminer raises many types on damaged input
        raise IngestError(source, _parser_problem(error)) from error
    with pdf:
        yield pdf


def _parser_problem(error: BaseException) -> str:
    """Say what a pdfminer failure means without quoting it: its messages can echo document content."""
    inner = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
    kind = type(inner).__name__
    if kind in {"PDFPasswordIncorrect", "PDFEncryptionError", "PDFEncryptionWarning"}:
        return "encrypted PDF: it needs a password (export it again without one)"
    if kind in {"PSEOF", "PDFNoValidXRef"}:
        return f"truncated or damaged PDF: the parser ran out of data ({kind})"
    return f"damaged PDF: the parser failed ({kind})"


def _pages(source: Path, pdf: Any) -> list[Any]:
    try:
        pages = list(pdf.pages)
    except Exception as error:
        raise IngestError(source, _parser_problem(error)) from error
    if not pages:
        raise IngestError(source, "PDF has no pages")
    if len(pages) > MAX_PAGES:
        raise IngestError(
            source, f"PDF has {len(pages)} pages, over the {MAX_PAGES}-page limit (an Apple export has 1–3)"
        )
    return pages


def _parse_page(source: Path, number: int, page: Any) -> tuple[list[_Path], str]:
    """Stroked paths and text phrases of one page; the parser works lazily, so errors surface here."""
    try:
        return _stroked_paths(page), "\n".join(_phrases(page))
    except IngestError:
        raise
    except Exception as error:
        raise IngestError(source, _parser_problem(error), f"page {number}") from error


# ------------------------------------------------------------------------------------------ text


def _phrases(page: Any) -> list[str]:
    """The page's text as phrases: words on one baseline, split where a wide gap separates two blocks
    (the name on the left and the date on the right of one line are two phrases), identity dropped."""
    lines: list[list[dict[str, Any]]] = []
    for word in sorted(page.extract_words(), key=lambda word: word["top"]):
        if lines and abs(word["top"] - lines[-1][0]["top"]) < 0.5 * word["height"]:
            lines[-1].append(word)
        else:
            lines.append([word])
    phrases: list[list[dict[str, Any]]] = []
    for line in lines:
        line.sort(key=lambda word: word["x0"])
        phrases.append([line[0]])
        for previous, word in pairwise(line):
            if word["x0"] - previous["x1"] < 2 * word["height"]:
                phrases[-1].append(word)
            else:
                phrases.append([word])
    texts = (" ".join(word["text"] for word in phrase) for phrase in phrases)
    return [text for text in texts if not _IDENTITY.search(text)]


def _read_header(source: Path, texts: list[str]) -> _Header:
    """Recorded date, classification, heart rate, scale, lead, rate, software and device from the text."""
    text = "\n".join(texts)
    found = {name: _first(pattern, text) for name, pattern in _FIELDS.items()}
    header = _Header()
    header.meta = {
        "recorded_date": found["recorded_date"],
        "classification": ecg_app_result(text),
        "average_heart_rate": f"{found['average_heart_rate']} BPM" if found["average_heart_rate"] else None,
        "average_heart_rate_bpm": int(found["average_heart_rate"]) if found["average_heart_rate"] else None,
        "software_version": ", ".join(
            f"{name} {found[key]}" for name, key in (("iOS", "ios"), ("watchOS", "watchos")) if found[key]
        )
        or None,
        "ios_version": found["ios"],
        "watchos_version": found["watchos"],
        "device": found["device"],
        "sample_rate_printed": f"{found['sample_rate']} Hz" if found["sample_rate"] else None,
        "lead_label": f"Lead {found['lead']}" if found["lead"] else None,
    }
    if found["recorded_date"]:
        header.start = _recorded_date(found["recorded_date"])
    if found["sample_rate"]:
        header.fs = check_sample_rate(source, _number(found["sample_rate"]), "footer, sample rate")
    header.meta["fs_assumed"] = found["sample_rate"] is None
    header.mm_per_s = _number(found["paper_speed"]) if found["paper_speed"] else APPLE_MM_PER_S
    header.mm_per_mv = _number(found["gain"]) if found["gain"] else APPLE_MM_PER_MV
    if not (header.mm_per_s > 0 and header.mm_per_mv > 0):
        raise IngestError(source, "printed paper speed or gain is zero", "footer")
    header.meta["paper_speed_mm_s"] = header.mm_per_s
    header.meta["gain_mm_mv"] = header.mm_per_mv
    header.lead = (canonical_lead(found["lead"]) if found["lead"] else None) or "I"
    header.meta["lead_assumed"] = found["lead"] is None
    header.device = found["device"]
    return header


def ecg_app_result(text: str) -> str | None:
    """The ECG app's result printed in `text` (a page's header text), verbatim with spaces folded, or None.

    Apple prints results in title case; prose that mentions one (the explanation under a result says "signs
    of atrial fibrillation") is in sentence case, so a match with a lower-case word is skipped.
    """
    for match in _CLASSIFICATION.finditer(text):
        value = " ".join(match["value"].split())
        if all(not word[0].isalpha() or word[0].isupper() for word in value.split()):
            return value
    return None


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    if match is None:
        return None
    groups = {name: value for name, value in match.groupdict().items() if value is not None}
    return next(iter(groups.values()), match.group(0)).strip()


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _recorded_date(text: str) -> datetime | None:
    """`Dec 17, 2021 at 12:58 PM`, `17 Dec 2021 at 12:58`, or the numeric forms the CSV reader knows."""
    parsed = parse_recorded_date(text)
    if parsed is not None:
        return parsed
    match = _WORDY_DATE.search(text)
    if match is None:
        return None
    month = _MONTHS.get((match["mon1"] or match["mon2"])[:3].lower())
    if month is None:
        return None
    day = int(match["day1"] or match["day2"])
    tz = re.sub(r"^(?:GMT|UTC)\s*", "", match["tz"] or "")
    numeric = f"{match['year']}-{month:02d}-{day:02d} {match['time']} {match['ampm'] or ''} {tz}"
    return parse_recorded_date(re.sub(r"\s+", " ", numeric).strip())


# ------------------------------------------------------------------------------------------ line art


def _stroked_paths(page: Any) -> list[_Path]:
    """Every stroked line, polyline and rectangle edge on the page, in page order within each kind."""
    paths = []
    for kind in ("curve", "line", "rect"):
        for obj in page.objects.get(kind, ()):
            if not obj.get("stroke"):
                continue
            points = np.asarray(obj.get("pts") or (), dtype=np.float64)
            if kind == "rect":
                x0, top, x1, bottom = obj["x0"], obj["top"], obj["x1"], obj["bottom"]
                points = np.array([[x0, top], [x1, top], [x1, bottom], [x0, bottom], [x0, top]])
            if points.ndim == 2 and len(points) >= 2 and np.isfinite(points).all():
                width = round(float(obj.get("linewidth") or 0.0), 2)
                paths.append(_Path(points, _rgb(obj.get("stroking_color")), width))
    return paths


def _rgb(colour: Any) -> tuple[float, float, float]:
    """Gray, RGB or CMYK as an RGB triple (black, the PDF default, when unset or a pattern)."""
    if not isinstance(colour, tuple | list) or not all(isinstance(c, int | float) for c in colour):
        return (0.0, 0.0, 0.0)
    if len(colour) == 1:
        rgb = (colour[0],) * 3
    elif len(colour) == 3:
        rgb = tuple(colour)
    elif len(colour) == 4:
        c, m, y, k = colour
        rgb = ((1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k))
    else:
        return (0.0, 0.0, 0.0)
    return tuple(round(float(value), 3) for value in rgb)  # type: ignore[return-value]


def _trace_paths(paths: list[_Path]) -> list[_Path]:
    """The waveform: of the line art that is not axis-aligned, the style (colour, width) with the most
    vertices, if that is enough vertices to be an ECG; else an empty list."""
    totals: dict[tuple[tuple[float, float, float], float], int] = {}
    for path in paths:
        if not path.axis_aligned:
            totals[path.style] = totals.get(path.style, 0) + len(path.points)
    if not totals:
        return []
    style, count = max(totals.items(), key=lambda item: item[1])
    if count < _MIN_TRACE_POINTS:
        return []
    return [path for path in paths if path.style == style and not path.axis_aligned]


def _grid_scale(paths: list[_Path], trace_style: tuple[Any, float]) -> _Scale | None:
    """Points per mm from the grid: the median spacing of the most numerous family of parallel lines
    (same colour, width and direction), read as a 1-mm or a 5-mm pitch, whichever is nearer nominal."""
    families: dict[tuple[Any, ...], list[float]] = {}
    for path in paths:
        if path.style == trace_style or not path.axis_aligned or len(path.points) != 2:
            continue
        (x0, y0), (x1, _) = path.points
        vertical = abs(x1 - x0) < 0.01
        families.setdefault((path.style, vertical), []).append(x0 if vertical else y0)
    best: float | None = None
    best_count = 0
    for positions in families.values():
        pitch, count = _pitch(np.unique(np.round(positions, 3)))
        if count >= _MIN_GRID_LINES and count > best_count:
            best, best_count = pitch, count
    if best is None:
        return None
    millimetres = 1 if best / PT_PER_MM < math.sqrt(5) else 5
    return _Scale(best / millimetres, f"grid, {millimetres}-mm lines")


def _pitch(positions: np.ndarray) -> tuple[float, int]:
    """Spacing of evenly spaced lines and how many there are: the median step, refined by a least-squares
    fit of position against line number (rounded coordinates make single steps off by up to 0.5 %)."""
    steps = np.diff(positions)
    steps = steps[steps > 0.2]
    if len(steps) < 2:
        return 0.0, 0
    step = float(np.median(steps))
    index = np.round((positions - positions[0]) / step)
    on_grid = np.abs(positions - positions[0] - index * step) < 0.2 * step
    if np.ptp(index[on_grid]) < 2:
        return step, len(steps)
    slope = np.polyfit(index[on_grid], positions[on_grid], 1)[0]
    return float(slope), int(on_grid.sum())


def _strips(trace: list[_Path], pt_per_mm: float) -> list[np.ndarray]:
    """The trace as strips, top to bottom: pieces that continue one another are chained, chains are
    grouped by median height, and each strip's points are put in x order."""
    chains: list[list[np.ndarray]] = []
    for path in trace:
        if chains and np.allclose(chains[-1][-1][-1], path.points[0], atol=0.05):
            chains[-1].append(path.points[1:])
        else:
            chains.append([path.points])
    joined = sorted((np.concatenate(chain) for chain in chains), key=lambda points: np.median(points[:, 1]))
    groups: list[list[np.ndarray]] = []
    for points in joined:
        level = np.median(points[:, 1])
        if groups and level - np.median(groups[-1][-1][:, 1]) < _STRIP_GAP_MM * pt_per_mm:
            groups[-1].append(points)
        else:
            groups.append([points])
    strips = []
    for group in groups:
        points = np.concatenate(group)
        strips.append(points[np.argsort(points[:, 0], kind="stable")])
    return strips


def _scale(
    source: Path, number: int, grid: _Scale | None, strips: list[np.ndarray], header: _Header
) -> _Scale:
    """The grid's pitch, checked against the first strip (10 s of paper when more strips follow). Without
    a grid, the page geometry (72/25.4 pt per mm, as Apple draws at 100 %) unless the first strip says the
    page was scaled (printed to fit another paper size), then the strip's width."""
    paper = _strip_width(strips[0], header.fs)
    full = len(strips) > 1 and paper > 0
    if grid is not None:
        seconds = paper / grid.pt_per_mm / header.mm_per_s
        if full and abs(seconds / APPLE_STRIP_S - 1) > _SCALE_TOLERANCE:
            raise IngestError(
                source,
                f"grid and trace disagree on the scale: at the grid's pitch the first strip lasts "
                f"{seconds:.1f} s, an Apple strip lasts {APPLE_STRIP_S:g} s",
                f"page {number}",
            )
        return grid
    from_strip = paper / (APPLE_STRIP_S * header.mm_per_s)
    if full and abs(from_strip / PT_PER_MM - 1) > _PAGE_SCALED:
        return _Scale(from_strip, "first strip's width (page scaled)")
    return _Scale(PT_PER_MM, "page geometry, 72/25.4 pt per mm")


def _strip_width(points: np.ndarray, fs: float) -> float:
    """Paper a full strip covers. With a vertex per sample (Apple draws one) that is the vertex step times
    the samples in 10 s, exactly; otherwise the span plus half a step, since the 10-s mark falls between
    the strip's last sample and the next strip's first."""
    span = float(np.ptp(points[:, 0]))
    step = span / max(len(points) - 1, 1)
    if abs(len(points) - APPLE_STRIP_S * fs) <= 2:
        return step * APPLE_STRIP_S * fs
    return span + 0.5 * step


def _vector_record(
    source: Path, number: int, paths: list[_Path], trace: list[_Path], header: _Header
) -> ECGRecord:
    """Strips → one uniform signal at the printed rate."""
    grid = _grid_scale(paths, trace[0].style)
    strips = _strips(trace, grid.pt_per_mm if grid else PT_PER_MM)
    scale = _scale(source, number, grid, strips, header)
    pt_per_s = header.mm_per_s * scale.pt_per_mm
    pt_per_mv = header.mm_per_mv * scale.pt_per_mm
    times, values, offset = [], [], 0.0
    for points in strips:
        seconds = (points[:, 0] - points[0, 0]) / pt_per_s
        times.append(offset + seconds)
        values.append((np.median(points[:, 1]) - points[:, 1]) / pt_per_mv)  # y grows downwards
        offset += seconds[-1] + 1 / header.fs
    signal = _uniform(np.concatenate(times), np.concatenate(values), header.fs)
    meta = {
        **header.meta,
        "trace_source": "vector paths",
        "page": number,
        "strips": len(strips),
        "calibration": scale.method,
        "pt_per_mm": round(scale.pt_per_mm, 5),
        "trace_colour": trace[0].colour,
    }
    return _record(signal, header, meta)


def _uniform(times: np.ndarray, values: np.ndarray, fs: float) -> np.ndarray:
    """Linear interpolation of the (possibly uneven) vertex times onto samples at `fs` from t = 0."""
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate(([True], np.diff(times) > 0))
    times, values = times[keep], values[keep]
    n = round(times[-1] * fs) + 1
    return np.interp(np.arange(n) / fs, times, values).astype(np.float32)


def _record(signal: np.ndarray, header: _Header, meta: dict[str, Any]) -> ECGRecord:
    return ECGRecord(
        signal=signal[np.newaxis, :],
        fs=header.fs,
        leads=(header.lead,),
        start=header.start,
        device=header.device,
        source_format=SOURCE_FORMAT,
        meta=meta,
    )


# ------------------------------------------------------------------------------------------ raster


def _image_record(source: Path, number: int, page: Any, header: _Header) -> ECGRecord:
    """A trace embedded as a picture: render the page, crop it to the pictures, digitise the strips."""
    from echopulse.ingest.strip_image import digitise_strip_image

    dpi = min(float(IMAGE_DPI), math.sqrt(MAX_RENDER_PIXELS / (float(page.width) * float(page.height))) * 72)
    rgb = _crop_to_images(_render(source, number, dpi), page.images, dpi / 72)
    digitised = digitise_strip_image(rgb, source=source, dpi=dpi, fs=header.fs)
    meta = {**digitised.meta, **header.meta, "trace_source": "embedded image", "page": number}
    meta["render_dpi"] = dpi
    return _record(digitised.signal[0], header, meta)  # digitised at header.fs, the printed rate


def _crop_to_images(rgb: np.ndarray, images: list[dict[str, Any]], px_per_pt: float) -> np.ndarray:
    """The part of the rendered page the pictures cover, so the header text never reaches the digitiser."""
    top = max(0, math.floor(min(image["top"] for image in images) * px_per_pt))
    bottom = math.ceil(max(image["bottom"] for image in images) * px_per_pt)
    left = max(0, math.floor(min(image["x0"] for image in images) * px_per_pt))
    right = math.ceil(max(image["x1"] for image in images) * px_per_pt)
    crop = rgb[top:bottom, left:right]
    return crop if crop.size else rgb


def _render(source: Path, number: int, dpi: float) -> np.ndarray:
    """Page `number` (1-based) as RGB uint8 at `dpi`, by pdfium."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(str(source))
    except pypdfium2.PdfiumError as error:
        problem = "PDF could not be rendered (pdfium refused it)"
        raise IngestError(source, problem, f"page {number}") from error
    try:
        bitmap = document[number - 1].render(scale=dpi / 72, rev_byteorder=True)  # RGB, not pdfium's BGR
        return np.array(bitmap.to_numpy()[..., :3])
    finally:
        document.close()
