"""The report's charts as plain SVG, drawn here on the server: the HTML report inlines them and the PDF
report embeds the same drawings (fpdf2 reads SVG), so both show one picture.

    svg = expression_timeline(times_s, probabilities, duration_s, cuts_s=[4.2])
    svg = share_bars({"happy": 0.6, "neutral": 0.4})
    svg = group_mix_chart(bins, duration_s)

Only what both a browser and fpdf2's SVG reader draw alike is used: ``line``, ``polyline``, ``rect`` and
``text`` with presentation attributes (no CSS, no scripts, no fonts or images from elsewhere), the generic
``sans-serif`` family, ASCII text. Every chart is ``WIDTH`` wide; its height depends on what it shows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr  # nosec B406  # escapes the text we write into SVG; no XML is parsed

from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.summary import UNCERTAIN

# The page's colours (static/video.js), so the report looks like the result page it exports.
COLOURS = {
    "angry": "#e5484d",
    "disgust": "#8e4ec6",
    "fear": "#f76b15",
    "happy": "#30a46c",
    "sad": "#0090ff",
    "surprise": "#ffc53d",
    "neutral": "#8b8d98",
    UNCERTAIN: "#d9d9de",
}
WIDTH = 720
FONT = "sans-serif"
TEXT_COLOUR = "#1d2330"
MUTED_COLOUR = "#5b6577"
GRID_COLOUR = "#e3e6ec"
AXIS_COLOUR = "#b9c0cc"
CUT_COLOUR = "#1d2330"
MAX_POINTS = 600  # per line: more points than pixels only make the file bigger
LEFT, RIGHT = 44, 12  # plot margins (y tick labels on the left)


def colour(expression: str) -> str:
    return COLOURS.get(expression, COLOURS[UNCERTAIN])


class _Svg:
    """One drawing's elements, written out by ``done``."""

    def __init__(self, width: int, height: int, title: str):
        self.width, self.height, self.title = width, height, title
        self.parts: list[str] = []

    def add(self, tag: str, text: str | None = None, **attributes: object) -> None:
        """An element; ``stroke_width=1`` is written ``stroke-width="1"``."""
        attrs = " ".join(f"{name.replace('_', '-')}={quoteattr(_number(value))}" for name, value in attributes.items())
        self.parts.append(f"<{tag} {attrs}/>" if text is None else f"<{tag} {attrs}>{escape(text)}</{tag}>")

    def text(self, x: float, y: float, text: str, size: float = 11, anchor: str = "start", fill: str = MUTED_COLOUR) -> None:
        self.add("text", text, x=x, y=y, font_size=size, font_family=FONT, text_anchor=anchor, fill=fill)

    def done(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" aria-label={quoteattr(self.title)}>'
        )
        return "\n".join([head, f"<title>{escape(self.title)}</title>", *self.parts, "</svg>"])


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def nice_step(span: float, target_ticks: int = 8) -> float:
    """A tick step of 1, 2 or 5 times a power of ten that gives about ``target_ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / max(1, target_ticks)
    power = 10.0 ** math.floor(math.log10(raw))
    return next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)


def time_ticks(duration_s: float, target_ticks: int = 8) -> list[float]:
    step = nice_step(duration_s, target_ticks)
    return [round(i * step, 6) for i in range(int(duration_s / step + 1e-9) + 1)]


def tick_label(seconds: float) -> str:
    """``12 s``, ``0.5 s``, ``1200 s``: the axis is in seconds however long the video."""
    return f"{seconds:g} s"


def _time_axis(svg: _Svg, duration_s: float, top: float, bottom: float, cuts_s: Sequence[float]) -> None:
    """Vertical grid lines with tick labels under the plot, the axis title, and shot cuts as dashed lines."""
    x = _x_scale(svg.width, duration_s)
    for t in time_ticks(duration_s):
        svg.add("line", x1=x(t), x2=x(t), y1=top, y2=bottom, stroke=GRID_COLOUR, stroke_width=1)
        svg.add("line", x1=x(t), x2=x(t), y1=bottom, y2=bottom + 4, stroke=AXIS_COLOUR, stroke_width=1)
        svg.text(x(t), bottom + 16, tick_label(t), anchor="middle")
    svg.add("line", x1=LEFT, x2=svg.width - RIGHT, y1=bottom, y2=bottom, stroke=AXIS_COLOUR, stroke_width=1)
    svg.text(svg.width - RIGHT, bottom + 30, "time (s)", anchor="end")
    for cut in cuts_s:
        if 0 <= cut <= duration_s:
            svg.add("line", x1=x(cut), x2=x(cut), y1=top, y2=bottom, stroke=CUT_COLOUR, stroke_width=1, stroke_dasharray="4 3")
    if cuts_s:
        svg.text(LEFT, bottom + 30, "dashed: shot cut", size=10)


def _x_scale(width: int, duration_s: float) -> Callable[[float], float]:
    span = max(duration_s, 1e-6)
    return lambda t: LEFT + (width - LEFT - RIGHT) * min(max(t, 0.0), span) / span


def _legend(svg: _Svg, expressions: Sequence[str], y: float) -> None:
    x = float(LEFT)
    for expression in expressions:
        svg.add("rect", x=x, y=y - 9, width=10, height=10, fill=colour(expression))
        svg.text(x + 14, y, expression, fill=TEXT_COLOUR)
        x += 14 + 7 * len(expression) + 16


def _downsample(times_s: Sequence[float], values: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points: the mean of each run of neighbouring points."""
    if len(times_s) <= max_points:
        return list(times_s), list(values)
    size = math.ceil(len(times_s) / max_points)
    out_t, out_v = [], []
    for start in range(0, len(times_s), size):
        chunk_t, chunk_v = times_s[start : start + size], values[start : start + size]
        out_t.append(sum(chunk_t) / len(chunk_t))
        out_v.append(sum(chunk_v) / len(chunk_v))
    return out_t, out_v


def _runs(times_s: Sequence[float], max_gap_s: float) -> list[range]:
    """Index ranges of the timeline without a gap longer than ``max_gap_s`` (the person out of view)."""
    runs, start = [], 0
    for i in range(1, len(times_s)):
        if times_s[i] - times_s[i - 1] > max_gap_s:
            runs.append(range(start, i))
            start = i
    if times_s:
        runs.append(range(start, len(times_s)))
    return runs


def expression_timeline(
    times_s: Sequence[float],
    probabilities: Mapping[str, Sequence[float]],
    duration_s: float,
    cuts_s: Sequence[float] = (),
    title: str = "Expression over time",
    height: int = 230,
) -> str:
    """One line per expression: its probability (0..1) on each analysed frame, over the whole video's time
    axis. A gap of more than a second (or three sampling steps) is left open: the person was not in view."""
    if len(times_s) and any(len(values) != len(times_s) for values in probabilities.values()):
        raise ValueError(f"each expression needs one probability per time ({len(times_s)}), got {[len(v) for v in probabilities.values()]}")
    svg = _Svg(WIDTH, height, title)
    top, bottom = 28.0, height - 40.0
    _legend(svg, list(probabilities), 14)

    def y(p: float) -> float:
        return bottom - (bottom - top) * p

    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        svg.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y(p), y2=y(p), stroke=GRID_COLOUR, stroke_width=1)
        svg.text(LEFT - 6, y(p) + 4, f"{p:g}", anchor="end")
    _time_axis(svg, duration_s, top, bottom, cuts_s)
    x = _x_scale(WIDTH, duration_s)
    steps = sorted(b - a for a, b in itertools.pairwise(times_s))
    max_gap_s = max(1.0, 3 * steps[len(steps) // 2]) if steps else 1.0
    for run in _runs(times_s, max_gap_s):
        run_times = [times_s[i] for i in run]
        for expression, values in probabilities.items():
            ts, vs = _downsample(run_times, [values[i] for i in run], MAX_POINTS)
            if len(ts) == 1:  # one frame: a dot, not a line
                svg.add("rect", x=x(ts[0]) - 1.5, y=y(vs[0]) - 1.5, width=3, height=3, fill=colour(expression))
                continue
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(ts, vs, strict=True))
            svg.add("polyline", points=points, fill="none", stroke=colour(expression), stroke_width=1.5, stroke_linejoin="round")
    return svg.done()


def share_bars(shares: Mapping[str, float], title: str = "Time share per expression") -> str:
    """A horizontal bar per expression: the share (0..1) of the person's frames that showed it."""
    row_h, label_w = 20, 80
    height = row_h * len(shares) + 10
    svg = _Svg(WIDTH, height, title)
    bar_w = WIDTH - label_w - 70
    for i, (expression, share) in enumerate(shares.items()):
        y = 5 + i * row_h
        svg.text(label_w - 6, y + 13, expression, anchor="end", fill=TEXT_COLOUR)
        svg.add("rect", x=label_w, y=y + 3, width=bar_w, height=row_h - 6, fill="#f3f4f7")
        svg.add("rect", x=label_w, y=y + 3, width=max(0.0, bar_w * min(share, 1.0)), height=row_h - 6, fill=colour(expression))
        svg.text(label_w + bar_w + 6, y + 13, f"{100 * share:.1f} %", fill=TEXT_COLOUR)
    return svg.done()


def group_mix_chart(
    starts_s: Sequence[float],
    shares: Sequence[Mapping[str, float]],
    duration_s: float,
    bin_s: float = 1.0,
    cuts_s: Sequence[float] = (),
    title: str = "Group expression mix over time",
    height: int = 200,
) -> str:
    """Stacked bars, one per time bin: the share of each expression over every face seen in the bin (a bin
    with no face stays empty)."""
    if len(starts_s) != len(shares):
        raise ValueError(f"one share per bin start: {len(starts_s)} starts, {len(shares)} shares")
    expressions = [*EMOTIONS, UNCERTAIN]
    svg = _Svg(WIDTH, height, title)
    top, bottom = 28.0, height - 40.0
    _legend(svg, expressions, 14)
    for p in (0.0, 0.5, 1.0):
        y = bottom - (bottom - top) * p
        svg.text(LEFT - 6, y + 4, f"{100 * p:g} %", anchor="end")
    _time_axis(svg, duration_s, top, bottom, ())
    x = _x_scale(WIDTH, duration_s)
    for start, share in zip(starts_s, shares, strict=True):
        x1, x2 = x(start), x(min(start + bin_s, duration_s))
        level = bottom
        for expression in expressions:
            h = (bottom - top) * share.get(expression, 0.0)
            if h > 0:
                svg.add("rect", x=x1, y=level - h, width=max(0.5, x2 - x1 - 0.5), height=h, fill=colour(expression))
                level -= h
    for cut in cuts_s:
        if 0 <= cut <= duration_s:
            svg.add("line", x1=x(cut), x2=x(cut), y1=top, y2=bottom, stroke=CUT_COLOUR, stroke_width=1, stroke_dasharray="4 3")
    return svg.done()
