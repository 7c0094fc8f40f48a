"""A real ``tfhost serve`` in a subprocess on 127.0.0.1, ports picked by the OS, for the
server tests to talk to with real clients."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TESTS = Path(__file__).parent
TF_SERVING_DATA = TESTS / "data" / "tf_serving"

_READY = re.compile(r"tfhost serve: ready: (.*)")
_REST = re.compile(r"REST on http://([^:]+):(\d+)")
_GRPC = re.compile(r"gRPC on ([^:]+):(\d+)")


class ServerProcess:
    """``tfhost serve ARGS --rest-port 0 --grpc-port 0``, started and waited for."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, timeout: float = 240):
        command = [sys.executable, "-m", "tfhost.cli", "serve", *args]
        if not any(a.startswith(("--rest-port", "--rest_api_port", "--no-rest")) for a in args):
            command += ["--rest-port", "0"]
        if not any(a.startswith(("--grpc-port", "--port", "--no-grpc")) for a in args):
            command += ["--grpc-port", "0"]
        self.command = command
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.rest: str | None = None
        self.grpc: str | None = None
        self._wait_ready(timeout)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.process.kill()
                raise AssertionError(f"tfhost serve not ready in {timeout} s:\n{self.log()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait()
                raise AssertionError(
                    f"tfhost serve exited with {self.process.returncode}:\n{self.log()}"
                )
            match = _READY.search(line)
            if match:
                rest = _REST.search(match.group(1))
                grpc = _GRPC.search(match.group(1))
                self.rest = None if rest is None else f"http://{rest.group(1)}:{rest.group(2)}"
                self.grpc = None if grpc is None else f"{grpc.group(1)}:{grpc.group(2)}"
                return

    def log(self) -> str:
        time.sleep(0.2)  # let the reader threads catch up with a process that just ended
        return "".join(self.stderr)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, and the exit code once it drained."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"tfhost serve did not stop on SIGTERM:\n{self.log()}") from None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def tf_serving_repository(root: Path) -> Path:
    """A repository of TF Serving's own test models, under the names its tests use."""
    repo = root / "models"
    repo.mkdir()
    for name, source in (
        ("half_plus_two", "saved_model_half_plus_two_cpu"),
        ("half_plus_two_tf2", "saved_model_half_plus_two_tf2_cpu"),
        ("half_plus_two_2_versions", "saved_model_half_plus_two_2_versions"),
        ("half_plus_three", "saved_model_half_plus_three"),
        ("counter", "saved_model_counter"),
    ):
        shutil.copytree(TF_SERVING_DATA / source, repo / name)
    return repo
