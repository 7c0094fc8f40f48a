"""TensorFlow's own log lines: out of the CLI's output and of a host's log unless asked for.

Every case runs in a fresh process (the CLI, or a small host script): TensorFlow writes its
start-up lines once per process, while it is imported, so only a fresh one shows them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from tfhost import Format
from tfhost.cells.tflog import cpp_severity, forward_level
from tfhost.examples import SAMPLE_X, expected_y

from .conftest import ArtifactMap

TIMEOUT_S = 300
# What TensorFlow writes at start-up on a machine like this one, whatever its prefix.
START_UP_WORDS = ("oneDNN", "cuda", "cuInit", "absl", "cpu_feature_guard")


def environment(**settings: str | None) -> dict[str, str]:
    """This process's environment without the TensorFlow log settings, plus ``settings``
    (None: leave it out)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    }
    env.update({key: value for key, value in settings.items() if value is not None})
    return env


def run(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> tuple[str, str]:
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def tensorflow_lines(text: str) -> list[str]:
    """The lines of ``text`` that TensorFlow's C++ log or its start-up wrote."""
    found = []
    for line in text.splitlines():
        bare = line.split("] ", 1)[1] if "[tfhost worker" in line else line
        if cpp_severity(bare) is not None or any(word in bare for word in START_UP_WORDS):
            found.append(line)
    return found


def info_lines(text: str) -> list[str]:
    """TensorFlow's C++ INFO lines in ``text``."""
    return [line for line in tensorflow_lines(text) if re.search(r"(^|\] )I\d{4} ", line)]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfhost.cli", *args]


# -- the classification itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "severity", "level_at_1"),
    [
        ("I0000 00:00:1796112692.648361    4602 port.cc:153] oneDNN custom operations", 0, None),
        ("W1201 08:11:21.123456    4602 loader.cc:9] careful", 1, 30),
        ("E0000 00:00:1796112696.492450    4602 cuda_platform.cc:52] failed call", 2, 40),
        ("F1201 08:11:21.123456    4602 control_flow_ops.cc:737] Abort_op", 3, 50),
        ("2025-09-17 14:44:05.157831: I external/xla/cudart_stub.cc:32] Could not find", 0, None),
        ("WARNING: All log messages before absl::InitializeLog() is called are written", 0, None),
        ("WARNING:tensorflow:From /x.py:12: calling f is deprecated", None, 30),
        ("INFO:tensorflow:Assets written to: /tmp/m/assets", None, 20),
        ("my model says hello", None, 30),
        ("Traceback (most recent call last):", None, 30),
        ("Invalid argument: something the model printed", None, 30),
    ],
)
def test_each_line_gets_the_level_its_prefix_names(
    line: str, severity: int | None, level_at_1: int | None
) -> None:
    assert cpp_severity(line) == severity
    assert forward_level(line, 1) == level_at_1
    assert forward_level(line, 0) is not None  # level 0 drops nothing
    # Level 3 drops every C++ line but FATAL, and nothing else.
    assert (forward_level(line, 3) is None) == (severity is not None and severity < 3)


# -- the CLI ------------------------------------------------------------------------------------


def test_importing_the_cli_does_not_import_tensorflow() -> None:
    script = "import sys, tfhost.cli; print('tensorflow' in sys.modules)"
    stdout, _ = run([sys.executable, "-c", script], environment())
    assert stdout.strip() == "False"


@pytest.mark.parametrize("command", ["inspect", "predict"])
def test_the_cli_keeps_tensorflow_start_up_lines_out_unless_verbose(
    command: str, artifacts: ArtifactMap
) -> None:
    path = str(artifacts[Format.TF2_SAVED_MODEL, 2.0])
    args = [command, path, "--json"]
    if command == "predict":
        args += ["--input", f"x={json.dumps(SAMPLE_X.tolist())}"]
    quiet_out, quiet_err = run(cli(*args), environment())
    assert tensorflow_lines(quiet_err) == [], quiet_err
    loud_out, loud_err = run(cli(*args, "--verbose"), environment())
    assert info_lines(loud_err), loud_err
    for stdout in (quiet_out, loud_out):  # the answer is the same, and alone on stdout
        document = json.loads(stdout)
        if command == "predict":
            values = document["outputs"]["y"]["values"]
            np.testing.assert_allclose(values, expected_y(SAMPLE_X, 2.0), rtol=1e-6)
        else:
            assert document["format"] == Format.TF2_SAVED_MODEL.value


def test_the_users_own_tf_cpp_min_log_level_lets_the_lines_in(artifacts: ArtifactMap) -> None:
    path = str(artifacts[Format.TF2_SAVED_MODEL, 1.0])
    _, stderr = run(cli("inspect", path), environment(TF_CPP_MIN_LOG_LEVEL="0"))
    assert info_lines(stderr), stderr


# -- workers ------------------------------------------------------------------------------------

_HOST_SCRIPT = """
import json, logging, sys
import numpy as np
if sys.argv[2] != "default":
    logging.basicConfig(level=sys.argv[2], format="%(name)s %(levelname)s %(message)s")
sys.path.insert(0, sys.argv[3])
from tfhost import Host
with Host() as host:
    host.load("m", sys.argv[1], isolation="process", preload=sys.argv[4:])
    y = host.predict("m", {"x": np.ones((1, 3), np.float32)})["y"]
print(json.dumps({"y": y.tolist(), "tensorflow": "tensorflow" in sys.modules}))
"""


def host_run(
    model: Path, logging_level: str, env: Mapping[str, str], tmp_path: Path, *preload: str
) -> tuple[list[float], str]:
    """Load ``model`` in a worker of a fresh host process; its answer and its stderr."""
    stdout, stderr = run(
        [sys.executable, "-c", _HOST_SCRIPT, str(model), logging_level, str(tmp_path), *preload],
        env,
        cwd=tmp_path,
    )
    report = json.loads(stdout)  # the host's stdout holds its own answer, nothing else
    assert report["tensorflow"] is False
    return report["y"][0], stderr


def test_a_worker_started_with_tf_cpp_min_log_level_3_writes_no_tensorflow_lines(
    artifacts: ArtifactMap, tmp_path: Path
) -> None:
    # Logging at DEBUG passes on everything it is given: only the level keeps them out.
    y, stderr = host_run(
        artifacts[Format.TF2_SAVED_MODEL, 1.0],
        "DEBUG",
        environment(TF_CPP_MIN_LOG_LEVEL="3"),
        tmp_path,
    )
    np.testing.assert_allclose(y, expected_y(np.ones((1, 3)), 1.0)[0], rtol=1e-6)
    assert tensorflow_lines(stderr) == [], stderr


def test_a_worker_logs_at_what_the_hosts_logging_shows(
    artifacts: ArtifactMap, tmp_path: Path
) -> None:
    path = artifacts[Format.TF2_SAVED_MODEL, 1.0]
    # Python's default configuration shows WARNING and above: no INFO line.
    _, default = host_run(path, "default", environment(), tmp_path)
    assert info_lines(default) == [], default
    # At INFO, TensorFlow's INFO lines come through logging, from tfhost.worker, at INFO.
    _, verbose = host_run(path, "INFO", environment(), tmp_path)
    forwarded = info_lines(verbose)
    assert forwarded, verbose
    assert all(line.startswith("tfhost.worker INFO [tfhost worker m pid ") for line in forwarded)


_CHATTY_MODULE = """
import sys
print("chatty: imported in the worker")
print("chatty: a line on stderr", file=sys.stderr)
"""


def test_what_a_model_writes_in_its_worker_reaches_the_hosts_log(tmp_path: Path) -> None:
    import tensorflow as tf

    class Chatty(tf.Module):  # type: ignore[misc]  # TensorFlow has no type hints
        @tf.function(  # type: ignore[untyped-decorator]
            autograph=False, input_signature=[tf.TensorSpec([None, 3], tf.float32)]
        )
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            printed = tf.print(
                "chatty: serving a batch of", tf.shape(x)[0], output_stream=sys.stderr
            )
            with tf.control_dependencies([printed]):
                return {"y": x * 2.0}

    module = Chatty()
    model = tmp_path / "chatty"
    tf.saved_model.save(module, str(model), signatures={"serving_default": module.serve})
    (tmp_path / "chatty_setup.py").write_text(_CHATTY_MODULE)
    # The quietest TensorFlow and Python's default logging: the model's own lines still show,
    # as WARNINGs, on the host's stderr and not its stdout.
    y, stderr = host_run(
        model, "WARNING", environment(TF_CPP_MIN_LOG_LEVEL="3"), tmp_path, "chatty_setup"
    )
    assert y == [2.0, 2.0, 2.0]
    prefix = "tfhost.worker WARNING [tfhost worker m pid "
    for said in (
        "chatty: imported in the worker",
        "chatty: a line on stderr",
        "chatty: serving a batch of 1",
    ):
        assert any(
            line.startswith(prefix) and line.endswith(said) for line in stderr.splitlines()
        ), (
            said,
            stderr,
        )
