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


_VERBOSE_HELP = (
    "Show TensorFlow's own log (oneDNN, CUDA, absl start-up lines, deprecation notices) "
    "and tfhost's INFO lines (serve always logs its own). Without it they are hidden, "
    "unless TF_CPP_MIN_LOG_LEVEL is set, which then chooses TensorFlow's level."
)
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help=_VERBOSE_HELP)]


def _tensorflow_logs(verbose: bool) -> None:
    """Set TensorFlow's log level and import it, before a command's first use of it.

    TensorFlow's C++ start-up lines and the TF1 loaders' deprecation notices flood a
    terminal before the answer: hidden unless ``--verbose`` or the user's own
    ``TF_CPP_MIN_LOG_LEVEL`` asks for them. TensorFlow writes some of them while it is
    imported whatever that level says; the import drops those too.
    """
    from tfhost.cells.tflog import ENV, import_tensorflow_quietly

    if verbose:
        os.environ[ENV] = "0"
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("tfhost").setLevel(logging.INFO)
    else:
        os.environ.setdefault(ENV, "3")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="tf_keras")
        warnings.filterwarnings("ignore", module="keras")
    import_tensorflow_quietly()


@app.command()
def demo(
    directory: Annotated[Path, typer.Option(help="Where to write the example models.")] = Path(
        "tfhost-demo"
    ),
    verbose: VerboseOption = False,
) -> None:
    """Write two colliding example models in every format and load all of them side by side.

    Each pair shares its variable, tensor and layer names but not its weights; every
    model must still return its own answer.
    """
    _tensorflow_logs(verbose)
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


_CUSTOM_OBJECTS_HELP = (
    "A Keras custom object as MODULE:NAME (e.g. my_layers:Scale); repeat for several. "
    "MODULE is imported from the current directory or the Python path."
)
_PRELOAD_HELP = (
    "A module to import (one that registers custom objects with "
    "@keras.saving.register_keras_serializable) or an op library (.so) to load first; "
    "repeatable."
)

CustomObjectsOption = Annotated[
    list[str] | None, typer.Option("--custom-objects", help=_CUSTOM_OBJECTS_HELP)
]
PreloadOption = Annotated[list[str] | None, typer.Option(help=_PRELOAD_HELP)]


def _error(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _importable_here() -> None:
    # A console script's sys.path starts at its own bin directory; users expect
    # `--preload my_layers` to find my_layers.py where they stand, as `python -m` would.
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _custom_objects(specs: list[str]) -> dict[str, object]:
    from tfhost.diagnosis.core import custom_object_specs, resolve_custom_object

    _importable_here()
    return {name: resolve_custom_object(spec) for name, spec in custom_object_specs(specs).items()}


@app.command()
def doctor(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model artifacts to diagnose together; a model repository stands for its models."
        ),
    ],
    inputs: Annotated[
        Path | None,
        typer.Option(help="Inputs as .npz: a key per input name, or MODEL/INPUT for one model."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the diagnosis as one JSON document.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Also write the diagnosis as Markdown to this file.")
    ] = None,
    custom_objects: CustomObjectsOption = None,
    preload: PreloadOption = None,
    signature: Annotated[
        str | None,
        typer.Option(help="Signature to run (default: serving_default, else the first)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds each child process may run before it is killed.")
    ] = 300.0,
    jobs: Annotated[
        int | None, typer.Option(help="Child processes at once (default: the CPU count).")
    ] = None,
) -> None:
    """Explain why models that load alone fail together, on your own models.

    Loads each model alone (a fresh process each), then all of them together the ways
    people naively do, then in one tfhost Host, and compares every output.
    Exit status: 0 the naive ways work and match; 1 a naive way fails or answers wrong
    and tfhost gets every model right; 2 even tfhost cannot load or match a model.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from tfhost.diagnosis import doctor as run_doctor
    from tfhost.diagnosis.report import render_json, render_markdown, render_rich
    from tfhost.errors import TfhostError

    errors = Console(stderr=True)
    tasks: dict[str, object] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    ) as progress:

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)  # type: ignore[arg-type]

        try:
            diagnosis = run_doctor(
                paths,
                inputs=inputs,
                custom_objects=custom_objects or [],
                preload=preload or [],
                signature=signature,
                timeout_s=timeout,
                jobs=jobs,
                progress=advance,
            )
        except TfhostError as exc:
            raise _error(exc.message) from None
    if report is not None:
        report.write_text(render_markdown(diagnosis))
        errors.print(f"report written to {report}", highlight=False)
    if json_output:
        typer.echo(render_json(diagnosis))
    else:
        console.print(render_rich(diagnosis))
    raise typer.Exit(diagnosis.exit_code)


@app.command("inspect")
def inspect_command(  # not ``inspect``: that name belongs to the standard library
    path: Annotated[Path, typer.Argument(help="A model artifact (any format tfhost reads).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    version: Annotated[
        int | None, typer.Option(help="Version folder to read (default: the highest).")
    ] = None,
    custom_objects: CustomObjectsOption = None,
    preload: PreloadOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show what an artifact is: format, versions, signatures, variables, writer, needs.

    What `saved_model_cli show --all` gives, for every format tfhost reads. Exit status 1
    when the signatures cannot be read (the message says what is missing).
    """
    _tensorflow_logs(verbose)
    import json

    from tfhost.errors import TfhostError
    from tfhost.inspection import inspect_artifact

    try:
        found = inspect_artifact(
            path,
            version,
            custom_objects=_custom_objects(custom_objects or []),
            preload=preload or [],
        )
    except TfhostError as exc:
        raise _error(exc.message) from None
    if json_output:
        typer.echo(json.dumps(found.to_dict(), indent=2))
        raise typer.Exit(1 if found.signatures_error else 0)
    from tfhost.validation import format_shape

    artifact = found.artifact
    versions = ", ".join(map(str, artifact.versions))
    weights = found.weights
    needs = found.needs
    console.print(f"[bold]{artifact.path}[/bold]", highlight=False)
    lines = [
        ("format", artifact.format.value),
        (
            "version",
            f"{artifact.version} of {versions}"
            if versions
            else f"{artifact.version} (no version folders)",
        ),
        (
            "written by",
            ", ".join(f"{k} {v}" for k, v in found.written_by.items()) or "not recorded",
        ),
        ("variables", f"{weights.count} ({weights.bytes:,} bytes, from the {weights.source})"),
        ("needs custom objects", ", ".join(needs.custom_objects) or "none"),
        ("needs ops", ", ".join(needs.ops) or "none beyond this TensorFlow"),
    ]
    if found.tags:
        lines.insert(2, ("MetaGraph tags", "; ".join(",".join(t) for t in found.tags)))
    for label, value in lines:
        console.print(f"  {label + ':':<22}{value}", highlight=False)
    if found.signatures_error:
        console.print(f"[red]signatures unknown:[/red] {found.signatures_error}", highlight=False)
    for key, spec in found.signatures.items():
        table = Table(title=f"signature {key!r}", title_justify="left")
        for column in ("", "name", "dtype", "shape"):
            table.add_column(column)
        for role, tensors in (("input", spec.inputs), ("output", spec.outputs)):
            for name, tensor in tensors.items():
                table.add_row(role, name, tensor.dtype, format_shape(tensor.shape))
        console.print(table)
    if found.signatures_error:
        raise typer.Exit(1)


_INPUT_HELP = (
    "NAME=@file.npy, NAME=@file.npz (its array NAME, or its only one), NAME=@file.json or "
    "NAME='[[1,2]]' (JSON); repeat per input. A one-input signature takes a bare VALUE; "
    "with several inputs, a bare @file.npz gives each input its array of the same name."
)
_VALUE_FORMS = "@file.npy, @file.npz, @file.json or JSON"


def _split_input(item: str) -> tuple[str | None, str]:
    """``NAME=VALUE`` as (NAME, VALUE); a bare VALUE as (None, VALUE).

    Read by its shape alone, never by whether NAME is one of the model's inputs: what
    precedes the first ``=`` is a NAME unless it is empty, holds a space, or starts the
    way only a value does (``[``, ``{``, ``"``, ``@``): ``["a=b"]`` and ``@a=b.npy`` are
    values.
    """
    name, sep, value = item.partition("=")
    if not sep or not name or name[0] in '[{"@' or any(c.isspace() for c in name):
        return None, item
    return name, value


def _read_file(name: str, source: Path) -> object:
    import json

    import numpy as np

    from tfhost.errors import InputError

    if source.suffix == ".npy":
        return np.load(source, allow_pickle=False)
    if source.suffix == ".npz":
        arrays = _read_npz(source)
        if name in arrays:
            return arrays[name]
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        raise InputError(f"input {name!r}: {source} holds {sorted(arrays)}, not {name!r}")
    if source.suffix == ".json":
        return np.asarray(json.loads(source.read_text()))
    raise InputError(f"input {name!r}: {source} is not .npy, .npz or .json")


def _read_npz(source: Path) -> dict[str, object]:
    import numpy as np

    with np.load(source, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _read_value(name: str, text: str) -> object:
    import json

    import numpy as np

    from tfhost.errors import InputError

    if text.startswith("@"):
        try:
            return _read_file(name, Path(text[1:]))
        except InputError:
            raise
        except (OSError, ValueError) as exc:
            raise InputError(f"input {name!r}: cannot read {text[1:]}: {exc}") from None
    try:
        return np.asarray(json.loads(text))
    except ValueError as exc:
        raise InputError(
            f"input {name!r}: {text!r} is not JSON ({exc}); a value is {_VALUE_FORMS}"
        ) from None


def _parse_inputs(
    items: list[str], model: str, signature: str, names: list[str]
) -> dict[str, object]:
    """The ``--input`` items for ``signature``'s inputs ``names``, each read once."""
    from tfhost.errors import InputError
    from tfhost.specs import DEFAULT_SIGNATURE

    where = f"model {model!r}" + (
        "" if signature == DEFAULT_SIGNATURE else f" signature {signature!r}"
    )
    values: dict[str, object] = {}

    def check(name: str) -> None:
        if name not in names:
            raise InputError(f"{where} has no input {name!r}; its inputs are {names}")
        if name in values:
            raise InputError(f"--input {name!r} is given twice")

    for item in items:
        name, value = _split_input(item)
        npz = value.startswith("@") and Path(value[1:]).suffix == ".npz"
        if name is None and npz and len(names) != 1:
            try:
                arrays = _read_npz(Path(value[1:]))
            except (OSError, ValueError) as exc:
                raise InputError(f"--input {item!r}: cannot read {value[1:]}: {exc}") from None
            for key, array in arrays.items():
                check(key)
                values[key] = array
            continue
        if name is None:
            if len(names) != 1:
                raise InputError(f"--input {item!r}: {where} has inputs {names}; write NAME=VALUE")
            name = names[0]
        check(name)
        values[name] = _read_value(name, value)
    return values


def _jsonable(array: object) -> object:
    import base64
    import math

    import numpy as np

    def convert(value: object) -> object:
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(value).decode("ascii")}
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, complex):
            return [convert(value.real), convert(value.imag)]
        return value

    return convert(np.asarray(array).tolist())


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="A model artifact (any format tfhost reads).")],
    input_values: Annotated[
        list[str],
        typer.Option(
            "--input",
            help=_INPUT_HELP,
        ),
    ],
    signature: Annotated[str, typer.Option(help="Signature to run.")] = "serving_default",
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    version: Annotated[
        int | None, typer.Option(help="Version folder to load (default: the highest).")
    ] = None,
    custom_objects: CustomObjectsOption = None,
    preload: PreloadOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Load one model here and print its outputs (shape, dtype, values)."""
    _tensorflow_logs(verbose)
    import json

    import numpy as np

    from tfhost import Host
    from tfhost.diagnosis import model_names
    from tfhost.errors import NotFound, TfhostError

    name = model_names([path])[0]
    try:
        with Host() as host:
            info = host.load(
                name,
                path,
                version=version,
                custom_objects=_custom_objects(custom_objects or []),
                preload=preload or [],
            )
            spec = info.signatures.get(signature)
            if spec is None:
                raise NotFound(
                    f"model {name!r} has no signature {signature!r}; it has "
                    f"{sorted(info.signatures)}"
                )
            outputs = host.predict(
                name,
                _parse_inputs(input_values, name, signature, list(spec.inputs)),
                signature=signature,
            )
    except TfhostError as exc:
        raise _error(exc.message) from None
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "model": name,
                    "version": info.version,
                    "signature": signature,
                    "outputs": {
                        key: {
                            "dtype": _dtype_name(value),
                            "shape": list(np.shape(value)),
                            "values": _jsonable(value),
                        }
                        for key, value in outputs.items()
                    },
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"{name} version {info.version}, signature {signature!r}")
    for column in ("output", "dtype", "shape", "values"):
        table.add_column(column, overflow="fold")
    for key, value in outputs.items():
        table.add_row(
            key,
            _dtype_name(value),
            str(list(np.shape(value))),
            np.array2string(np.asarray(value), threshold=200),
        )
    console.print(table)


def _dtype_name(value: object) -> str:
    import numpy as np

    array = np.asarray(value)
    return "string" if array.dtype.kind in "OSU" else str(array.dtype)


_SERVE_EPILOG = (
    "TensorFlow Serving's flags work too, with their meaning: --port (gRPC), "
    "--rest_api_port, --model_name, --model_base_path, --model_config_file, "
    "--model_config_file_poll_wait_seconds, --file_system_poll_wait_seconds, "
    "--rest_api_timeout_in_ms, --monitoring_config_file, --max_num_load_retries, "
    "--load_retry_interval_micros, --allow_version_labels_for_unavailable_models, "
    "--enable_batching, --batching_parameters_file, --grpc_max_threads. "
    "Its other flags are refused by name."
)


@app.command(epilog=_SERVE_EPILOG)
def serve(
    repository: Annotated[
        Path | None,
        typer.Argument(help="The model repository: a folder of models (TF Serving's layout)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    rest_port: Annotated[
        int, typer.Option("--rest-port", "--rest_api_port", help="REST port; 0 picks one.")
    ] = 8501,
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", "--port", help="gRPC port; 0 picks one.")
    ] = 8500,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve REST only.")] = False,
    no_rest: Annotated[bool, typer.Option("--no-rest", help="Serve gRPC only.")] = False,
    poll_seconds: Annotated[
        float,
        typer.Option(
            "--poll-seconds",
            "--file_system_poll_wait_seconds",
            help="How often to look at the repository (and the config file) for changes; "
            "0: once, at start.",
        ),
    ] = 2.0,
    config_poll_seconds: Annotated[
        float | None,
        typer.Option(
            "--model_config_file_poll_wait_seconds",
            help="How often to re-read the config file; 0: once, at start (the fleet reads "
            "config and repository together, at the shorter of the two intervals).",
        ),
    ] = None,
    model_config_file: Annotated[
        Path | None,
        typer.Option(
            "--model-config-file",
            "--model_config_file",
            help="tfhost.toml, or TF Serving's models.config (text ModelServerConfig).",
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option("--model-name", "--model_name", help="Serve one model under this name."),
    ] = None,
    model_base_path: Annotated[
        Path | None,
        typer.Option(
            "--model-base-path", "--model_base_path", help="The one model's folder of versions."
        ),
    ] = None,
    memory_budget: Annotated[
        str | None, typer.Option(help="Most memory the models may take, e.g. 8GiB.")
    ] = None,
    isolation: Annotated[
        str, typer.Option(help="inline, or process: each model in its own worker.")
    ] = "inline",
    token: Annotated[
        str | None,
        typer.Option(envvar="TFHOST_TOKEN", help="Require 'Authorization: Bearer TOKEN'."),
    ] = None,
    timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--request-timeout-ms", "--rest_api_timeout_in_ms", help="Per-request timeout."
        ),
    ] = None,
    max_body: Annotated[
        str, typer.Option("--max-body", help="Largest request body (413 beyond).")
    ] = "64MiB",
    max_response: Annotated[
        str,
        typer.Option("--max-response", help="Largest answer a model may give (refused beyond)."),
    ] = "256MiB",
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", help="Seconds a request body may stop arriving (408 beyond)."
        ),
    ] = 30.0,
    max_in_flight: Annotated[
        int, typer.Option(help="Requests in flight at once; beyond, 503 / UNAVAILABLE.")
    ] = 256,
    grpc_threads: Annotated[
        int | None,
        typer.Option(
            "--grpc-threads",
            "--grpc_max_threads",
            help="Threads gRPC calls run on (default: 4 per core, at least 16).",
        ),
    ] = None,
    grpc_running_calls: Annotated[
        int | None,
        typer.Option(
            "--grpc-running-calls",
            help="gRPC calls running at once, not counting those waiting for their batch"
            " (default: 2 per core).",
        ),
    ] = None,
    monitoring_config_file: Annotated[
        Path | None,
        typer.Option(
            "--monitoring_config_file",
            help="TF Serving's MonitoringConfig: serve Prometheus metrics at its path too.",
        ),
    ] = None,
    max_num_load_retries: Annotated[
        int, typer.Option("--max-load-retries", "--max_num_load_retries")
    ] = 5,
    load_retry_interval_micros: Annotated[
        int, typer.Option("--load_retry_interval_micros", help="Backoff between load tries.")
    ] = 1_000_000,
    labels_for_unavailable: Annotated[
        bool, typer.Option("--allow_version_labels_for_unavailable_models")
    ] = False,
    enable_batching: Annotated[
        bool,
        typer.Option(
            "--enable_batching",
            help="Batch the requests of every model whose tfhost.toml says nothing of "
            "batching (TF Serving's defaults, or --batching_parameters_file's).",
        ),
    ] = False,
    batching_parameters_file: Annotated[
        str | None,
        typer.Option(
            "--batching_parameters_file",
            help="TF Serving's BatchingParameters (text format) for --enable_batching; "
            '"" (its default): none.',
        ),
    ] = None,
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            # "\\[": rich would take [ray] for markup and print nothing.
            help="Serve on Ray Serve (pip install 'tfhost\\[ray]'): the cluster RAY_ADDRESS "
            "names, else a local one started and stopped here; REST only, through Ray "
            "Serve's proxy on --host:--rest-port. See docs/scale-out.md.",
        ),
    ] = False,
    replicas: Annotated[
        int,
        typer.Option(help="With --ray: replicas, each a fleet of its own (--memory-budget each)."),
    ] = 1,
    verbose: VerboseOption = False,
) -> None:
    """Serve a model repository over TensorFlow Serving's REST and gRPC APIs and the KServe
    V2 / Open Inference Protocol, following the repository as it changes."""
    from tfhost.errors import TfhostError
    from tfhost.serve.flags import batching_settings

    try:
        # Read before TensorFlow is imported (seconds): a bad file fails at once.
        batching = batching_settings(
            enable_batching, Path(batching_parameters_file) if batching_parameters_file else None
        )
    except TfhostError as exc:
        raise _error(str(exc)) from None
    if replicas != 1 and not on_ray:
        raise _error("--replicas is for --ray: tfhost serve alone is one server")
    if not on_ray:  # on Ray the replicas import TensorFlow, this process need not
        _tensorflow_logs(verbose)  # before anything imports TensorFlow
    from tfhost.serve.command import ServeOptions, run

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tfhost").setLevel(logging.INFO)

    options = ServeOptions(
        repository=repository,
        host=host,
        rest_port=None if no_rest else rest_port,
        grpc_port=None if no_grpc else grpc_port,
        poll_seconds=poll_seconds,
        config_poll_seconds=config_poll_seconds,
        model_config_file=model_config_file,
        model_name=model_name,
        model_base_path=model_base_path,
        memory_budget=memory_budget,
        isolation=isolation,
        token=token,
        timeout_ms=timeout_ms,
        max_body=max_body,
        max_response=max_response,
        body_timeout_s=body_timeout,
        max_in_flight=max_in_flight,
        grpc_threads=grpc_threads,
        grpc_running_calls=grpc_running_calls,
        monitoring_config_file=monitoring_config_file,
        max_load_retries=max_num_load_retries,
        load_retry_interval_s=load_retry_interval_micros / 1e6,
        labels_for_unavailable=labels_for_unavailable,
        batching=batching,
        ray=on_ray,
        replicas=replicas,
    )
    try:
        run(options, Console(stderr=True))
    except (TfhostError, OSError) as exc:
        raise _error(str(exc)) from None


def main() -> None:
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        from tfhost.errors import InputError
        from tfhost.serve.flags import translate

        try:
            sys.argv[2:] = translate(sys.argv[2:])
        except InputError as exc:
            raise SystemExit(_error_text(exc.message)) from None
    app()


def _error_text(message: str) -> int:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    return 2


if __name__ == "__main__":
    main()
