"""A finished video's results as a report to share (DESIGN.md §2, video jobs: ``/report.html``, ``/report.pdf``):

    report = build_report(results)        # VideoResults (GET .../results) + the models' held-out figures
    html = report_html(report)            # one self-contained page: charts inline as SVG, no scripts, no links
    pdf = report_pdf(report)              # the same content as a PDF (fpdf2, pure Python; charts from the same SVG)

Both show the notice that the outputs describe facial expressions, not feelings, and that age and gender are
apparent estimates; the video's facts; the models with their versions and the held-out figures from their
model cards; the person rule (when the results carry one); a table of every person (brief detections apart);
the group's expression mix over time; and per person the expression-over-time chart and time share per
expression, with valence / arousal and the shot cuts. Results of jobs finished before the person rule and
shot cuts were kept (no ``person_rule``, no ``shot_cuts_s``) say so in plainer words.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from emotion_detector.labels import EMOTIONS
from emotion_detector.videos import charts
from emotion_detector.videos.schemas import PersonResult, VideoResults
from emotion_detector.videos.summary import UNCERTAIN
from serving import SHIPPED_MODELS

NOTICE = (
    "This report describes facial expressions as a model reads them from each face's appearance, frame by frame. "
    "It does not say what anyone feels: a smile is not happiness and a neutral face is not calm. "
    "Age and gender are apparent estimates from appearance, not facts about a person."
)
MAX_CUTS_LISTED = 20  # a video cut every few seconds would fill a page with them; the charts mark them all
EVALUATION_HEADING = "## Evaluation (held-out data)"
UNKNOWN_EVALUATION = "not known: no model card for this version is shipped with this installation"


# ---- content shared by both formats ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEvaluation:
    name: str
    version: int | str
    held_out: str  # the first sentence of the model card's held-out evaluation, or UNKNOWN_EVALUATION


def held_out_evaluation(card: str) -> str | None:
    """The model card's held-out figures: the first line of its "Evaluation (held-out data)" section, up to
    the baseline's figures, without Markdown emphasis."""
    _, found, after = card.partition(EVALUATION_HEADING)
    if not found:
        return None
    line = next((line.strip() for line in after.splitlines() if line.strip()), "")
    if not line or line.startswith("#"):
        return None
    return line.split(" Baseline", 1)[0].replace("**", "").strip()


def model_evaluations(versions: Mapping[str, int | str], models_dir: Path = SHIPPED_MODELS) -> list[ModelEvaluation]:
    """Each model that analysed the video, with the held-out figures of its model card (models_dir/name/version)."""
    found = []
    for name, version in sorted(versions.items()):
        figures = _card_figures(models_dir / name / str(version) / "MODEL_CARD.md")
        found.append(ModelEvaluation(name, version, figures or UNKNOWN_EVALUATION))
    return found


@cache  # a shipped model's card never changes while the server runs: read once, not per report
def _card_figures(card: Path) -> str | None:
    return held_out_evaluation(card.read_text(encoding="utf-8")) if card.is_file() else None


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    widths: list[float] = field(default_factory=list)  # relative column widths in the PDF (empty: equal)
    headings: bool = True  # the header row is shown (a table of facts has none)


@dataclass(frozen=True)
class Chart:
    svg: str
    caption: str


@dataclass(frozen=True)
class PersonSection:
    title: str
    summary: str
    timeline: Chart
    shares: Chart
    statistics: Table


@dataclass(frozen=True)
class Report:
    """What both formats show, in the order they show it."""

    title: str
    filename: str
    video_id: str
    generated_at: str  # "2026-12-06 14:55 UTC"
    notice: str
    uncertain_note: str
    facts: list[tuple[str, str]]
    models: list[ModelEvaluation]
    person_rule: str
    people: Table
    brief: Table | None  # brief detections (tracks that are not people by the rule), listed apart
    group_mix: Chart | None
    sections: list[PersonSection]


def _every(n: int) -> str:
    return "every frame" if n == 1 else f"one frame in {n}"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {value % 60:04.1f} s"


def _shares(person: PersonResult) -> dict[str, float]:
    total = max(1, sum(person.expression_counts.values()))
    labels = [*EMOTIONS, *(label for label in person.expression_counts if label not in EMOTIONS)]
    return {
        label: person.expression_counts.get(label, 0) / total
        for label in labels
        if label != UNCERTAIN or person.expression_counts.get(label)
    }


def _person_row(person: PersonResult) -> list[str]:
    return [
        f"{person.id}",
        f"{person.first_seen_s:.1f}-{person.last_seen_s:.1f} s",
        f"{person.frames_seen} ({100 * person.share_of_analysed_frames:.0f} %)",
        person.most_common_expression,
        f"{person.valence_mean:+.2f} / {person.arousal_mean:+.2f}",
        f"{person.age.mean_years:.0f} +/- {person.age.std_years:.0f} years",
        f"{person.gender.label} ({100 * person.gender.confidence:.0f} %)",
    ]


def _people_table(people: Sequence[PersonResult]) -> Table:
    header = ["Person", "In view", "Frames seen", "Most common expression", "Valence / arousal", "Apparent age", "Apparent gender"]
    return Table(header, [_person_row(p) for p in people], [0.7, 1.3, 1.2, 1.6, 1.3, 1.4, 1.4])


def _statistics(person: PersonResult) -> Table:
    rows = []
    for expression, share in _shares(person).items():
        when_top = person.mean_confidence_when_top.get(expression)
        mean = person.mean_probability.get(expression)
        rows.append(
            [
                expression,
                f"{person.expression_counts.get(expression, 0)}",
                f"{100 * share:.1f} %",
                "-" if mean is None else f"{mean:.3f}",
                "-" if when_top is None else f"{when_top:.3f}",
            ]
        )
    return Table(["Expression", "Frames", "Time share", "Mean probability", "Mean confidence when shown"], rows, [1.2, 0.8, 1, 1.2, 1.8])


def _timeline(person: PersonResult) -> tuple[list[float], dict[str, list[float]]]:
    times = [entry.time_s for entry in person.timeline]
    probabilities: dict[str, list[float]] = {e: [] for e in EMOTIONS}
    for entry in person.timeline:
        shown = ((entry.model_extra or {}).get("emotion") or {}).get("probabilities") or {}
        for expression in EMOTIONS:
            probabilities[expression].append(float(shown.get(expression, 0.0)))
    return times, probabilities


def _facts(results: VideoResults, counted: int, brief: int, cuts: Sequence[float]) -> list[tuple[str, str]]:
    video = _video_fields(results)
    facts = [
        ("File", results.video.filename),
        ("Video", f"{results.video.width} x {results.video.height} pixels, {results.video.fps:g} frames/s"),
        ("Duration", _seconds(video.get("duration_s", 0.0))),
        (
            "Frames analysed",
            f"{video.get('frames_analysed', '?')} of {video.get('frames', '?')} ({_every(int(video.get('every_n_frames') or 1))})",
        ),
        ("People", f"{counted}"),
        ("Brief detections", f"{brief} (not counted as people)"),
    ]
    if cuts:
        listed = ", ".join(f"{cut:.1f} s" for cut in cuts[:MAX_CUTS_LISTED])
        facts.append(("Shot cuts", f"{len(cuts)}: {listed}{', ...' if len(cuts) > MAX_CUTS_LISTED else ''}"))
    if "processing_s" in video:
        facts.append(("Analysed in", f"{_seconds(video['processing_s'])} ({video.get('speed_x_realtime', 0):.1f}x real time)"))
    if "detector" in video:
        facts.append(("Face detector", f"{video['detector']}"))
    facts.append(("Job", results.id))
    return facts


def _video_fields(results: VideoResults) -> dict[str, Any]:
    return results.video.model_dump()


def _person_rule(results: VideoResults) -> str:
    rule = _video_fields(results).get("person_rule")
    if isinstance(rule, dict) and "min_seen_s" in rule:
        return (
            f"A track counts as a person when it is in view for at least {rule['min_seen_s']:g} s with a mean detection "
            f"score of at least {rule.get('min_mean_score', 0):g}. Shorter or weaker tracks are brief detections: "
            "listed apart, never counted as people."
        )
    return (
        "People are the tracks seen long enough to matter (the results' main people); "
        "the other tracks are listed apart as brief detections."
    )


def build_report(results: VideoResults, models_dir: Path = SHIPPED_MODELS, now: dt.datetime | None = None) -> Report:
    video = _video_fields(results)
    duration_s = float(video.get("duration_s") or max((p.last_seen_s for p in results.people), default=0.0))
    cuts = [float(c) for c in video.get("shot_cuts_s") or []]
    people = [p for p in results.people if p.counted]
    brief = [p for p in results.people if not p.counted]
    uncertain_below = float(video.get("emotion_uncertain_below") or 0.0)
    sections = []
    for person in people:
        times, probabilities = _timeline(person)
        summary = (
            f"In view {person.first_seen_s:.1f}-{person.last_seen_s:.1f} s on {person.frames_seen} analysed frames; "
            f"most often {person.most_common_expression}; apparent age {person.age.mean_years:.0f} years, "
            f"apparent gender {person.gender.label}."
        )
        summary += (
            f" Mean valence {person.valence_mean:+.2f}, arousal {person.arousal_mean:+.2f} "
            "(-1..1, derived from the expression probabilities)."
        )
        sections.append(
            PersonSection(
                title=f"Person {person.id}",
                summary=summary,
                timeline=Chart(
                    charts.expression_timeline(times, probabilities, duration_s, cuts, title=f"Person {person.id}: expression over time"),
                    "Expression over time: the probability of each expression on every analysed frame (smoothed over time).",
                ),
                shares=Chart(
                    charts.share_bars(_shares(person), title=f"Person {person.id}: time share per expression"),
                    "Time share per expression: the share of this person's analysed frames that showed each expression.",
                ),
                statistics=_statistics(person),
            )
        )
    mix = results.group_mix
    bin_s = mix[1].start_s - mix[0].start_s if len(mix) > 1 else max(duration_s, 1.0)
    generated = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return Report(
        title=f"Expression report: {results.video.filename}",
        filename=results.video.filename,
        video_id=results.id,
        generated_at=generated.strftime("%Y-%m-%d %H:%M UTC"),
        notice=NOTICE,
        uncertain_note=(
            f"A frame whose top expression has a probability below {uncertain_below:g} (the emotion model's calibrated "
            "threshold) is counted as uncertain: such a reading is more often wrong than right."
            if uncertain_below > 0
            else "Every frame is counted under its top expression (the emotion model has no uncertain threshold)."
        ),
        facts=_facts(results, len(people), len(brief), cuts),
        models=model_evaluations(results.video.model_dump().get("models") or {}, models_dir),
        person_rule=_person_rule(results),
        people=_people_table(people),
        brief=_people_table(brief) if brief else None,
        group_mix=(
            Chart(
                charts.group_mix_chart([b.start_s for b in mix], [b.share for b in mix], duration_s, bin_s, cuts),
                f"Per {bin_s:g} s, the share of each expression over every face in view (empty: no face).",
            )
            if any(b.faces for b in mix)
            else None
        ),
        sections=sections,
    )


# ---- HTML ---------------------------------------------------------------------------------------------


def _inline(svg: str) -> Markup:
    """An SVG drawing inside HTML: the HTML parser puts <svg> in its namespace, so the xmlns attribute (the
    only URL in a drawing, and never fetched) is left out."""
    # bandit B704: the drawing is ours (charts.py), every text in it escaped there.
    return Markup(svg.replace(' xmlns="http://www.w3.org/2000/svg"', "", 1))  # nosec B704


@cache
def _templates() -> Environment:
    environment = Environment(loader=PackageLoader("emotion_detector.videos", "templates"), autoescape=select_autoescape(default=True))
    environment.filters["inline_svg"] = _inline
    return environment


def report_html(report: Report) -> str:
    return _templates().get_template("report.html").render(report=report)


# ---- PDF ----------------------------------------------------------------------------------------------

# The PDF's fonts are the standard Helvetica (no font file to ship or find), which covers Latin-1: other
# characters are spelled in it or replaced.
_SPELLED = {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...", "\u00d7": "x"}
_SPELLED |= {"\u2192": "->", "\u2265": ">=", "\u2264": "<=", "\u2212": "-", "\u2248": "~"}


_SPELLING = str.maketrans(_SPELLED)


def latin1(text: str) -> str:
    return text.translate(_SPELLING).encode("latin-1", "replace").decode("latin-1")


def report_pdf(report: Report) -> bytes:
    from fpdf import FPDF  # imported when a PDF is made: nothing heavy at import time

    class _Document(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("helvetica", size=7)
            self.set_text_color(91, 101, 119)
            text = f"{report.title} - expressions, not feelings; age and gender are apparent estimates - page {self.page_no()}/{{nb}}"
            self.cell(0, 5, latin1(text), align="C")

    pdf = _Document(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_title(latin1(report.title))
    pdf.set_creator("emotion-detector")
    pdf.add_page()
    writer = _PdfWriter(pdf)
    writer.write(report)
    return bytes(pdf.output())


class _PdfWriter:
    def __init__(self, pdf: Any):  # fpdf.FPDF, imported lazily
        self.pdf = pdf
        self.width = pdf.epw

    def heading(self, text: str, size: float = 13, keep_with_next_mm: float = 20) -> None:
        """A heading, on a new page when less than ``keep_with_next_mm`` would follow it on this one."""
        self.pdf.ln(2)
        if self.pdf.will_page_break(keep_with_next_mm):
            self.pdf.add_page()
        self.pdf.set_font("helvetica", "B", size)
        self.pdf.set_text_color(29, 35, 48)
        self.pdf.multi_cell(0, size * 0.5, latin1(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1)

    def paragraph(self, text: str, size: float = 9.5, colour: tuple[int, int, int] = (29, 35, 48)) -> None:
        self.pdf.set_font("helvetica", size=size)
        self.pdf.set_text_color(*colour)
        self.pdf.multi_cell(0, size * 0.5, latin1(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1.5)

    def notice(self, text: str) -> None:
        pdf = self.pdf
        pdf.set_fill_color(255, 247, 225)
        pdf.set_draw_color(255, 197, 61)
        pdf.set_font("helvetica", "B", 9.5)
        pdf.set_text_color(29, 35, 48)
        pdf.multi_cell(0, 5, latin1(text), border=1, fill=True, padding=2.5, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    def table(self, table: Table, size: float = 8.5) -> None:
        from fpdf.fonts import FontFace

        pdf = self.pdf
        pdf.set_font("helvetica", size=size)
        pdf.set_text_color(29, 35, 48)
        pdf.set_draw_color(215, 219, 227)
        pdf.set_fill_color(255, 255, 255)
        widths = tuple(table.widths) if table.widths else None
        headings = FontFace(emphasis="BOLD", fill_color=(243, 244, 247))
        rows = [table.header, *table.rows] if table.headings else table.rows
        with pdf.table(
            col_widths=widths, line_height=size * 0.5, text_align="LEFT", first_row_as_headings=table.headings, headings_style=headings
        ) as drawn:
            for row in rows:
                cells = drawn.row()
                for value in row:
                    cells.cell(latin1(value))
        pdf.ln(3)

    def chart(self, chart: Chart) -> None:
        height_px = float(re.search(r'height="([\d.]+)"', chart.svg).group(1))  # type: ignore[union-attr]  # ours: always there
        height_mm = self.width * height_px / charts.WIDTH
        if self.pdf.will_page_break(height_mm + 6):
            self.pdf.add_page()
        self.paragraph(chart.caption, size=8.5, colour=(91, 101, 119))
        drawing = re.sub(r"<title>.*?</title>", "", chart.svg, count=1)  # fpdf2 warns of the tag it does not draw
        self.pdf.image(io.BytesIO(drawing.encode("utf-8")), w=self.width, h=height_mm)
        self.pdf.ln(2)

    def write(self, report: Report) -> None:
        pdf = self.pdf
        pdf.set_font("helvetica", "B", 17)
        pdf.set_text_color(29, 35, 48)
        pdf.multi_cell(0, 8, latin1(report.title), align="L", new_x="LMARGIN", new_y="NEXT")
        self.paragraph(f"Generated {report.generated_at} from video job {report.video_id}.", size=8.5, colour=(91, 101, 119))
        self.notice(report.notice)
        self.paragraph(report.uncertain_note)

        self.heading("Video")
        self.table(Table(["", ""], [[name, value] for name, value in report.facts], [1, 3], headings=False))
        self.heading("Models")
        self.table(
            Table(
                ["Model", "Version", "Held-out evaluation (model card)"],
                [[m.name, str(m.version), m.held_out] for m in report.models],
                [1, 0.7, 5],
            )
        )
        self.heading("People")
        self.paragraph(report.person_rule)
        if report.people.rows:
            self.table(report.people)
        else:
            self.paragraph("No person was found in this video.")
        if report.brief is not None:
            self.heading("Brief detections (not counted as people)", size=11)
            self.table(report.brief)
        if report.group_mix:
            self.heading("Group expression mix over time", keep_with_next_mm=70)
            self.chart(report.group_mix)
        for section in report.sections:
            self.heading(section.title, keep_with_next_mm=80)  # with its summary and first chart
            self.paragraph(section.summary)
            self.chart(section.timeline)
            self.chart(section.shares)
            self.table(section.statistics)
