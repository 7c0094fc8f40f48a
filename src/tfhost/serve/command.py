"""``tfhost serve``: the command line's options made into a fleet and a server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tfhost.batching import BatchingSettings
from tfhost.errors import InputError
from tfhost.fleet import (
    ConfigError,
    Fleet,
    FleetConfig,
    FleetSettings,
    ModelConfig,
    parse_bytes,
)
from tfhost.serve.settings import ServeSettings
from tfhost.serve.workers import default_running, default_threads
from tfhost.settings import HostSettings

READY_LINE = "tfhost serve: ready: "


@dataclass(frozen=True)
class ServeOptions:
    repository: Path | None
    host: str = "127.0.0.1"
    rest_port: int | None = 8501
    grpc_port: int | None = 8500
    poll_seconds: float = 2.0  # 0: once
    config_poll_seconds: float | None = None  # 0: once; None: with the repository
    model_config_file: Path | None = None
    model_name: str | None = None
    model_base_path: Path | None = None
    memory_budget: str | None = None
    isolation: str = "inline"
    token: str | None = None
    timeout_ms: int | None = None
    max_body: str = "64MiB"
    max_response: str = "256MiB"
    body_timeout_s: float = 30.0
    max_in_flight: int = 256
    grpc_threads: int | None = None  # None: workers.default_threads()
    grpc_running_calls: int | None = None  # None: workers.default_running()
    monitoring_config_file: Path | None = None
    max_load_retries: int = 5
    load_retry_interval_s: float = 1.0
    labels_for_unavailable: bool = False
    # The batching of every model whose tfhost.toml says nothing of batching: TF Serving's
    # --enable_batching with its --batching_parameters_file (flags.batching_settings).
    batching: BatchingSettings | None = None
    # --ray: serve on Ray Serve with this many replicas (tfhost.ray), REST only.
    ray: bool = False
    replicas: int = 1


def run(options: ServeOptions, console: Console) -> None:
    """Load the fleet (showing its progress), serve until SIGTERM, drain, close."""
    if options.ray:
        from tfhost.ray.launch import run_on_ray  # Ray only when asked for

        run_on_ray(options, console)
        return
    from tfhost.serve.server import Bound, Server  # grpc, uvicorn, the serving protos

    settings = serve_settings(options)
    fleet = build_fleet(options)
    try:
        fleet.start(wait=True, progress=console)
        server = Server(fleet, settings)

        def ready(bound: Bound) -> None:
            # One line on stdout, for scripts and tests that started us on port 0.
            print(f"{READY_LINE}{bound.describe()}", flush=True)

        server.run(on_ready=ready)
    finally:
        fleet.close()


def serve_settings(options: ServeOptions) -> ServeSettings:
    """How the server listens and guards itself (every replica's, on Ray)."""
    if not options.body_timeout_s > 0:  # NaN too
        raise InputError(
            f"--body-timeout must be a positive number of seconds, got {options.body_timeout_s}"
        )
    return ServeSettings(
        host=options.host,
        rest_port=options.rest_port,
        grpc_port=options.grpc_port,
        max_body_bytes=_size(options.max_body, "--max-body"),
        max_response_bytes=_size(options.max_response, "--max-response"),
        body_timeout_s=options.body_timeout_s,
        request_timeout_s=None if options.timeout_ms is None else options.timeout_ms / 1000,
        max_in_flight=options.max_in_flight,
        token=options.token,
        metrics_paths=_metrics_paths(options.monitoring_config_file),
        grpc_threads=default_threads() if options.grpc_threads is None else options.grpc_threads,
        grpc_running_calls=(
            default_running() if options.grpc_running_calls is None else options.grpc_running_calls
        ),
    )


def build_fleet(options: ServeOptions, *, lazy: bool = False) -> Fleet:
    """The fleet ``tfhost serve`` runs for ``options``; ``lazy``: every model loads on its
    first request (a Ray replica's fleet)."""
    polls = [options.poll_seconds, options.config_poll_seconds or 0]
    if any(p < 0 for p in polls):
        raise InputError("poll intervals must be 0 (once) or a positive number of seconds")
    # TF Serving's 0 is "once, at start": the fleet then looks only when asked.
    positive = [p for p in polls if p > 0]
    fleet_settings = FleetSettings(
        poll_s=min(positive) if positive else None,
        reread_config=options.config_poll_seconds != 0,
        max_retries=options.max_load_retries,
        retry_backoff_s=options.load_retry_interval_s,
        labels_for_unavailable=options.labels_for_unavailable,
        batching=options.batching,
        lazy=lazy,
        memory_budget=None
        if options.memory_budget is None
        else _size(options.memory_budget, "--memory-budget"),
    )
    host_settings = HostSettings(default_isolation=options.isolation)
    if options.model_base_path is not None or options.model_name is not None:
        # TensorFlow Serving's one-model form: --model_name (default "default") and
        # --model_base_path, and no repository.
        if options.model_base_path is None:
            raise InputError("--model_name needs --model_base_path (the model's folder)")
        if options.repository is not None or options.model_config_file is not None:
            raise InputError(
                "give either --model_base_path (one model) or a repository / "
                "--model_config_file, not both"
            )
        base = Path(options.model_base_path).expanduser().absolute()
        if not base.exists():
            raise InputError(f"--model_base_path: no folder or artifact at {str(base)!r}")
        name = options.model_name or "default"
        try:
            config = FleetConfig(models={name: ModelConfig(name, base)}, repo=base.parent)
        except ConfigError as exc:
            raise InputError(f"--model_name: {exc}") from None
        return Fleet(
            base.parent, settings=fleet_settings, host_settings=host_settings, config=config
        )
    config_file = options.model_config_file
    if config_file is not None and not config_file.expanduser().is_file():
        # Said before the fleet starts: its start-up table would come first otherwise.
        raise InputError(f"--model_config_file: no such file: {str(config_file)!r}")
    repository = options.repository
    if repository is None:
        if options.model_config_file is None:
            raise InputError(
                "give a model repository (tfhost serve REPO), --model_config_file, or "
                "--model_name with --model_base_path"
            )
        # TensorFlow Serving's models.config names each model's base path; relative ones
        # are read from the file's folder.
        repository = options.model_config_file.expanduser().absolute().parent
    return Fleet(
        repository,
        config_file=options.model_config_file,
        settings=fleet_settings,
        host_settings=host_settings,
    )


def _size(text: str, flag: str) -> int:
    try:
        return parse_bytes(text)
    except ConfigError as exc:
        raise InputError(f"{flag}: {exc.what}") from None


def _metrics_paths(file: Path | None) -> tuple[str, ...]:
    """The Prometheus path a TF Serving MonitoringConfig file asks for, if any."""
    if file is None:
        return ()
    from google.protobuf import text_format

    from tfhost.serve.protos import monitoring_config

    config = monitoring_config()
    try:
        text_format.Parse(Path(file).read_text(), config)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise InputError(f"--monitoring_config_file {file}: {exc}") from None
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return ()
    path = prometheus.path or "/monitoring/prometheus/metrics"
    if not path.startswith("/"):
        raise InputError(f"--monitoring_config_file {file}: path {path!r} must start with '/'")
    return (path,)
