"""The status page at ``/``: every model, its versions, states and labels, memory against
the budget, request rates and the last error. Server-rendered HTML that refreshes itself;
no scripts, no front-end build."""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING

from tfhost.sizes import format_bytes
from tfhost.state import State

if TYPE_CHECKING:
    from tfhost.batching import BatchingStats
    from tfhost.serve.plane import Plane

REFRESH_S = 3

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.3rem;margin:0 0 .3rem}
p.summary{margin:.2rem 0 1rem;color:#555}
table{border-collapse:collapse;min-width:60%}
th,td{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.AVAILABLE{color:#176f2c;font-weight:600}.FAILED{color:#b00020;font-weight:600}
.LOADING,.START{color:#a66300}.UNLOADING,.END{color:#777}
.error{color:#b00020;font-size:.9em;max-width:40rem}
.batching{font-size:.9em;max-width:30rem}.batching .why{color:#777}
.bar{display:inline-block;width:12rem;height:.7rem;background:#eee;vertical-align:middle}
.bar span{display:block;height:100%;background:#4a78c2}
"""


def render(plane: Plane) -> str:
    fleet = plane.fleet
    infos = fleet.models()
    activity = plane.activity()
    budget = fleet.memory_budget
    used = sum(info.memory_bytes or 0 for info in infos if info.state is State.AVAILABLE)
    rows = []
    for info in infos:
        labels = ", ".join(
            sorted(label for label, v in fleet.labels(info.name).items() if v == info.version)
        )
        rate, last_error = activity.get(info.name, (0.0, None))
        error = info.error or (None if last_error is None else _ago(last_error))
        rows.append(
            "<tr>"
            f"<td>{escape(info.name)}</td>"
            f'<td class="num">{info.version}</td>'
            f'<td class="{info.state.name}">{info.state.name}</td>'
            f"<td>{escape(labels)}</td>"
            f"<td>{escape(info.isolation.value)}</td>"
            f'<td class="num">{_bytes(info.memory_bytes)}</td>'
            f'<td class="num">{_seconds(info.load_seconds)}</td>'
            f'<td class="num">{rate:.2f}</td>'
            f'<td class="batching">{_batching(info.batching)}</td>'
            f'<td class="error">{escape(error or "")}</td>'
            "</tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="10">no models</td></tr>')
    memory = f"{_bytes(used)} used"
    if budget is not None:
        share = min(1.0, used / budget) if budget else 1.0
        memory = (
            f"{_bytes(used)} of {_bytes(budget)} budget "
            f'<span class="bar" title="{share:.0%}"><span style="width:{share * 100:.1f}%">'
            f"</span></span>"
        )
    config_error = fleet.config_error
    warning = (
        ""
        if config_error is None
        else f'<p class="error">config: {escape(config_error)} (the last good config serves)</p>'
    )
    uptime = time.time() - plane.started
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>tfhost serve</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>tfhost serve</h1>"
        f'<p class="summary">{len({i.name for i in infos})} models, {len(infos)} versions · '
        f"memory {memory} · {plane.active} requests in flight · "
        f"evictions {fleet.evictions} · up {_seconds(uptime)}</p>"
        f"{warning}"
        '<table id="models"><thead><tr>'
        "<th>model</th><th>version</th><th>state</th><th>labels</th><th>isolation</th>"
        "<th>memory</th><th>load</th><th>requests/s</th><th>batching</th><th>last error</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )


def _batching(stats: BatchingStats | None) -> str:
    """A batched version's cell: its max batch size (and how "auto" chose it), queue depth,
    mean rows per model call, and the signatures batching is off for, with why."""
    if stats is None:
        return ""
    calls = sum(stats.batch_sizes.values())
    rows = sum(size * n for size, n in stats.batch_sizes.items())
    mean = f"{rows / calls:.1f}" if calls else "-"
    parts = [
        f"max {stats.max_batch_size}",
        f"queue {stats.queue_depth}",
        f"mean batch {mean}",
    ]
    text = " · ".join(parts)
    if stats.chosen != "configured":
        text += f'<br><span class="why">chosen: {escape(stats.chosen)}</span>'
    for signature, why in sorted(stats.unbatched.items()):
        text += f'<br><span class="why">unbatched {escape(signature)}: {escape(why)}</span>'
    return text


def _ago(error: tuple[float, str]) -> str:
    at, message = error
    return f"{_seconds(time.time() - at)} ago: {message}"


def _bytes(value: int | None) -> str:
    return "" if value is None else format_bytes(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"
