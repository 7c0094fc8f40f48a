"""The ``tfhost`` command line: thin over the Python API."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

app = typer.Typer(
    help="Load many TensorFlow and Keras models into one host, each correct and isolated.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Load many TensorFlow and Keras models into one host, each correct and isolated."""


def _quiet_tensorflow() -> None:
    # TensorFlow's C++ logging and its deprecation notices for the TF1 loaders flood a
    # terminal; users can still set their own level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tf_keras")
    warnings.filterwarnings("ignore", module="keras")


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option(help="Where to write the example models.")
    ] = Path("tfhost-demo"),
) -> None:
    """Write two colliding example models in every format and load all of them side by side.

    Each pair shares its variable, tensor and layer names but not its weights; every
    model must still return its own answer.
    """
    _quiet_tensorflow()
    import numpy as np

    from tfhost import Format, Host
    from tfhost.examples import SAMPLE_X, expected_y, write_example

    scales = (1.0, 2.0)
    jobs = [(fmt, scale) for fmt in Format for scale in scales]
    table = Table(title="tfhost demo: 14 models with colliding names in one Host")
    for column in ("model", "format", "expected y[0]", "got y[0]", "ok"):
        table.add_column(column)
    failures = 0
    with Host() as host, Progress(console=console, transient=True) as progress:
        writing = progress.add_task("writing example models", total=len(jobs))
        paths = {}
        for fmt, scale in jobs:
            paths[fmt, scale] = write_example(directory / f"{fmt.value}-{scale:g}", fmt, scale)
            progress.advance(writing)
        loading = progress.add_task("loading them into one Host", total=len(jobs))
        for fmt, scale in jobs:
            host.load(f"{fmt.value}-{scale:g}", paths[fmt, scale])
            progress.advance(loading)
        for fmt, scale in jobs:
            name = f"{fmt.value}-{scale:g}"
            (got,) = host.predict(name, {"x": SAMPLE_X}).values()
            want = expected_y(SAMPLE_X, scale)
            ok = bool(np.allclose(got, want))
            failures += not ok
            table.add_row(name, fmt.value, str(want[0]), str(got[0]), "yes" if ok else "NO")
    console.print(table)
    if failures:
        console.print(f"[red]{failures} model(s) returned another model's answer[/red]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(jobs)} models returned their own answers[/green]")


def main() -> None:
    app()
