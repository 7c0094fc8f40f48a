"""A live view of a fleet's models while they load: state, version, load time, memory."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tfhost.host import ModelInfo
from tfhost.state import State

_STYLE = {
    State.LOADING: "yellow",
    State.AVAILABLE: "green",
    State.FAILED: "bold red",
    State.UNLOADING: "dim",
}


def table(models: Sequence[ModelInfo]) -> Table:
    """One row per model version."""
    view = Table(title="tfhost fleet", expand=False)
    for column in ("model", "version", "state", "load s", "memory MiB", "error"):
        view.add_column(column, justify="right" if column in ("version", "load s") else "left")
    for info in models:
        style = _STYLE.get(info.state, "")
        view.add_row(
            info.name,
            str(info.version),
            f"[{style}]{info.state.value}[/]" if style else info.state.value,
            "" if info.load_seconds is None else f"{info.load_seconds:.1f}",
            "" if info.memory_bytes is None else f"{info.memory_bytes / 2**20:.0f}",
            (info.error or "")[:80],
        )
    return view


@contextlib.contextmanager
def live(snapshot: Callable[[], Sequence[ModelInfo]], console: Console) -> Iterator[None]:
    """Show ``snapshot()`` as a table, refreshed four times a second, until the block ends;
    the last view stays on the screen."""
    done = threading.Event()
    try:
        with Live(table(snapshot()), console=console, refresh_per_second=4) as view:

            def refresh() -> None:
                while not done.wait(0.25):
                    view.update(table(snapshot()))

            thread = threading.Thread(target=refresh, name="tfhost-fleet-progress", daemon=True)
            thread.start()
            try:
                yield
            finally:
                done.set()
                thread.join()
                view.update(table(snapshot()))
    finally:
        if not console.is_terminal:
            # Off a terminal Live writes its last view without the line's end: the next
            # line (a log line, or the error that ended the block) would start on the
            # table's bottom border.
            console.line()
