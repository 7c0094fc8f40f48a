"""A diagnosis three ways: a rich table for a terminal, Markdown for a bug report, JSON.

All three say the same thing from the same :class:`Diagnosis`; none adds timings except
the JSON ``steps`` and ``elapsed_s``, so the table and the Markdown are reproducible.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tfhost.diagnosis.causes import shorten
from tfhost.diagnosis.verdicts import (
    FLOAT_ATOL,
    FLOAT_RTOL,
    Cause,
    CauseKind,
    Diagnosis,
    Outcome,
    Verdict,
    Way,
)

HEADERS = {
    Way.ALONE: "alone",
    Way.SHARED_GRAPH: "(i) shared graph",
    Way.LOAD_MODEL: "(ii) load_model",
    Way.GRAPH_RECIPE: "(iii) Graph recipe",
    Way.TFHOST: "tfhost",
}
_STYLES = {
    Outcome.OK: "green",
    Outcome.WRONG: "bold red",
    Outcome.ERROR: "red",
    Outcome.NOT_APPLICABLE: "dim",
    Outcome.NOT_RUN: "yellow",
}
EXIT_MEANING = {
    0: "the naive ways work and match",
    1: "a naive way fails or answers wrong; tfhost gets every model right",
    2: "even tfhost cannot load or match a model",
}


def numbered_causes(diagnosis: Diagnosis) -> list[Cause]:
    """Distinct causes worth a footnote, in table order (n/a explains itself)."""
    found: list[Cause] = []
    for model in diagnosis.models:
        for way in diagnosis.ways():
            cause = diagnosis.verdict(model.name, way).cause
            if (
                cause is not None
                and cause.kind is not CauseKind.NOT_APPLICABLE
                and cause not in found
            ):
                found.append(cause)
    return found


def _cell(verdict: Verdict, footnotes: Sequence[Cause]) -> str:
    label = verdict.outcome.value
    if verdict.cause is not None and verdict.cause in footnotes:
        label += f" [{footnotes.index(verdict.cause) + 1}]"
    if not verdict.counts:
        label += " *"
    return label


def _collision_line(diagnosis: Diagnosis) -> str | None:
    if not diagnosis.collisions:
        return None
    variables = [c.name for c in diagnosis.collisions if c.kind == "variable"]
    ops = [c.name for c in diagnosis.collisions if c.kind == "op"]
    parts = []
    if variables:
        parts.append(f"variables {shorten(variables, 12)}")
    if ops:
        parts.append(f"ops {shorten(ops, 12)}")
    return f"Names in more than one graph-mode model: {'; '.join(parts)}."


def render_rich(diagnosis: Diagnosis) -> RenderableType:
    footnotes = numbered_causes(diagnosis)
    ways = diagnosis.ways()
    table = Table(title=f"tfhost doctor: {len(diagnosis.models)} model(s)", show_lines=False)
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("format", overflow="fold")
    for way in ways:
        table.add_column(HEADERS[way], overflow="fold")
    for model in diagnosis.models:
        cells: list[RenderableType] = [model.name, model.format or "?"]
        for way in ways:
            verdict = diagnosis.verdict(model.name, way)
            cells.append(Text(_cell(verdict, footnotes), style=_STYLES[verdict.outcome]))
        table.add_row(*cells)
    legend = Text("; ".join(w.title for w in ways if w.naive), style="dim")
    parts: list[RenderableType] = [table, legend]
    for number, cause in enumerate(footnotes, 1):
        line = Text(f"[{number}] ", style="bold")
        line.append(cause.summary)
        if cause.fix:
            line.append("\n    fix: ", style="cyan")
            line.append(cause.fix)
        parts.append(line)
    if any(not v.counts for v in diagnosis.verdicts):
        parts.append(Text("* reported, not counted in the exit status (see notes)", style="dim"))
    if (collisions := _collision_line(diagnosis)) is not None:
        parts.append(Text(collisions))
    style = {0: "green", 1: "yellow", 2: "red"}[diagnosis.exit_code]
    headline = Text(f"\nVerdict (exit {diagnosis.exit_code}): ", style=f"bold {style}")
    headline.append(diagnosis.summary)
    parts.append(headline)
    if diagnosis.recommendations:
        parts.append(Text("Recommendation:", style="bold"))
        parts.extend(Text(f"  - {r}") for r in diagnosis.recommendations)
    if diagnosis.notes:
        parts.append(Text("Notes:", style="bold"))
        parts.extend(Text(f"  - {n}", style="dim") for n in diagnosis.notes)
    return Group(*parts)


def render_text(diagnosis: Diagnosis, width: int = 110) -> str:
    """The terminal rendering as plain text (no colour), for docs and tests."""
    console = Console(
        width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO()
    )
    console.print(render_rich(diagnosis))
    return console.export_text().rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdict_table(diagnosis: Diagnosis) -> str:
    """The model-by-way table in Markdown, footnote numbers included."""
    footnotes = numbered_causes(diagnosis)
    ways = diagnosis.ways()
    lines = [
        "| model | " + " | ".join(_md(HEADERS[w]) for w in ways) + " |",
        "|---|" + "---|" * len(ways),
    ]
    for m in diagnosis.models:
        cells = [_cell(diagnosis.verdict(m.name, w), footnotes) for w in ways]
        lines.append(f"| {_md(m.name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(diagnosis: Diagnosis, *, environment: bool = True) -> str:
    """A Markdown report to paste into a bug report."""
    footnotes = numbered_causes(diagnosis)
    ways = diagnosis.ways()
    lines = [
        "## tfhost doctor report",
        "",
        f"**Verdict (exit {diagnosis.exit_code}: {EXIT_MEANING[diagnosis.exit_code]}):** "
        f"{diagnosis.summary}",
        "",
    ]
    if environment:
        env = diagnosis.environment
        lines += [
            f"Environment: tfhost {env.get('tfhost')}, TensorFlow {env.get('tensorflow')}, "
            f"Keras {env.get('keras')}, Python {env.get('python')}, {env.get('gpus', 0)} GPU(s).",
            "",
        ]
    lines += [
        "### Models",
        "",
        "| model | path | format | signature | inputs | written by |",
        "|---|---|---|---|---|---|",
    ]
    for m in diagnosis.models:
        written = ", ".join(f"{k} {v}" for k, v in m.written_by.items()) or "not recorded"
        lines.append(
            f"| {_md(m.name)} | `{_md(m.path)}` | {m.format or '?'} | {m.signature or '?'} | "
            f"{_md(m.inputs)} | {_md(written)} |"
        )
    lines += ["", "### Verdicts", "", verdict_table(diagnosis), ""]
    lines += [
        f"Ways: {'; '.join(w.title for w in ways)}. "
        f"Float outputs match within rtol {FLOAT_RTOL:g} / atol {FLOAT_ATOL:g}; "
        f"integers, booleans and strings must be equal.",
        "",
    ]
    if footnotes:
        lines += ["### Causes", ""]
        for number, cause in enumerate(footnotes, 1):
            lines.append(
                f"{number}. {cause.summary}" + (f"  \n   **Fix:** {cause.fix}" if cause.fix else "")
            )
        lines.append("")
    if any(not v.counts for v in diagnosis.verdicts):
        lines += ["\\* reported, not counted in the exit status (see notes).", ""]
    if diagnosis.collisions:
        lines += ["### Colliding names", "", "| name | kind | models |", "|---|---|---|"]
        lines += [
            f"| `{_md(c.name)}` | {c.kind} | {', '.join(c.models)} |" for c in diagnosis.collisions
        ]
        lines.append("")
    if diagnosis.recommendations:
        lines += ["### Recommendation", ""]
        lines += [f"- {r}" for r in diagnosis.recommendations]
        lines.append("")
    if diagnosis.notes:
        lines += ["### Notes", ""]
        lines += [f"- {n}" for n in diagnosis.notes]
        lines.append("")
    details = [v for v in diagnosis.verdicts if v.detail]
    if details:
        lines += ["<details><summary>Error messages</summary>", ""]
        for v in details:
            lines += [f"**{_md(v.model)} / {v.way.value}**", "", "```", v.detail.strip(), "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines)


def render_json(diagnosis: Diagnosis) -> str:
    return json.dumps(diagnosis.to_dict(), indent=2)
