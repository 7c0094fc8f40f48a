"""The fleet on a real repository: TF Serving's layout, swaps under load, retries, budgets.

Real artifacts (copied from the session's example models, scale 1 or 2 so each version's
answer tells which version served), a real Host, the fleet's own loop polling fast.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tfhost import (
    Format,
    HostSettings,
    InputError,
    Isolation,
    NotFound,
    ResourceExhausted,
    State,
    TfhostError,
)
from tfhost.examples import SAMPLE_X, expected_y
from tfhost.fleet import Fleet, FleetSettings

from .conftest import ArtifactMap
from .support import wait_until, workers

FAST = FleetSettings(poll_s=0.1, retry_backoff_s=0.2)
TF2 = Format.TF2_SAVED_MODEL


def scale_of(outputs: dict[str, np.ndarray]) -> float:
    (y,) = outputs.values()
    return float(y[0, 0] / expected_y(SAMPLE_X, 1.0)[0, 0])


def place(artifacts: ArtifactMap, repo: Path, model: str, version: str, scale: float) -> Path:
    """Copy a version in as TF Serving expects: written aside, renamed into place."""
    aside = repo / model / f".incoming-{version}"
    shutil.copytree(artifacts[TF2, scale], aside)
    final = repo / model / version
    aside.rename(final)
    return final


def versions(fleet: Fleet, model: str, state: State = State.AVAILABLE) -> list[int]:
    return [m.version for m in fleet.models() if m.name == model and m.state is state]


@pytest.fixture
def repo(tmp_path: Path, artifacts: ArtifactMap) -> Path:
    root = tmp_path / "repo"
    (root / "m").mkdir(parents=True)
    place(artifacts, root, "m", "1", 1.0)
    place(artifacts, root, "m", "00000002", 2.0)  # leading zeros: version 2
    (root / "m" / "notes").mkdir()  # not a version
    shutil.copy(artifacts[Format.KERAS, 2.0], root / "k.keras")
    return root


@pytest.fixture
def fleet(repo: Path) -> Iterator[Fleet]:
    with Fleet(repo, settings=FAST).start(timeout=120) as running:
        yield running


def test_the_repository_serves_its_latest_versions(fleet: Fleet) -> None:
    assert versions(fleet, "m") == [2]
    assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == pytest.approx(2.0)
    assert scale_of(fleet.predict("k", {"x": SAMPLE_X})) == pytest.approx(2.0)
    with pytest.raises(NotFound):
        fleet.predict("notes", {"x": SAMPLE_X})


def test_five_swaps_under_four_hammering_threads(
    fleet: Fleet, repo: Path, artifacts: ArtifactMap
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    served: list[float] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                served.append(scale_of(fleet.predict("m", {"x": SAMPLE_X})))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for version in range(3, 8):
            scale = 1.0 if version % 2 else 2.0
            place(artifacts, repo, "m", str(version), scale)
            wait_until(lambda v=version: versions(fleet, "m") == [v], 60, f"only v{version}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors[:5]
    assert len(served) > 50
    assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == pytest.approx(1.0)  # v7


def test_a_corrupt_version_leaves_the_old_one_serving_and_is_retried(
    fleet: Fleet, repo: Path
) -> None:
    bad = repo / "m" / ".incoming"
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"not a protobuf")
    bad.rename(repo / "m" / "9")
    failed: list[int] = []
    wait_until(
        lambda: bool(failed.extend(versions(fleet, "m", State.FAILED)) or failed), 30, "v9 FAILED"
    )
    (nine,) = [m for m in fleet.models() if m.name == "m" and m.version == 9]
    assert "corrupt SavedModel protobuf" in (nine.error or "")
    assert versions(fleet, "m") == [2]
    assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == pytest.approx(2.0)
    # Retried with backoff: the fleet tries again (LOADING again) after it failed.
    seen: list[State] = []
    unsubscribe = fleet.host.subscribe(
        lambda e: seen.append(e.state) if e.id.version == 9 else None
    )
    try:
        wait_until(lambda: State.LOADING in seen, 30, "a retry of v9")
    finally:
        unsubscribe()


def test_a_version_removed_from_disk_is_unloaded(
    fleet: Fleet, repo: Path, artifacts: ArtifactMap
) -> None:
    place(artifacts, repo, "m", "3", 1.0)
    wait_until(lambda: versions(fleet, "m") == [3], 60, "v3 serving")
    shutil.rmtree(repo / "m" / "3")
    wait_until(lambda: versions(fleet, "m") == [2], 60, "back to v2")
    assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == pytest.approx(2.0)


def test_a_bad_config_keeps_the_last_good_one(fleet: Fleet, repo: Path) -> None:
    (repo / "tfhost.toml").write_text('[models.m]\nversion_policy = "all"\nbogus = 1\n')
    wait_until(lambda: fleet.config_error is not None, 30, "the config error")
    assert "bogus" in (fleet.config_error or "")
    assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == pytest.approx(2.0)
    (repo / "tfhost.toml").write_text('[models.m]\nversion_policy = "all"\n')
    wait_until(lambda: versions(fleet, "m") == [1, 2], 60, "both versions")
    assert fleet.config_error is None


def test_labels_route_requests(repo: Path) -> None:
    (repo / "tfhost.toml").write_text(
        '[models.m]\nversion_policy = "all"\nlabels = { stable = 1, canary = 2 }\n'
    )
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X}, label="stable")) == 1.0
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X}, label="canary")) == 2.0
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X}, version=1)) == 1.0
        with pytest.raises(InputError, match="Unrecognized servable version label: beta"):
            fleet.predict("m", {"x": SAMPLE_X}, label="beta")


def test_lazy_models_load_on_demand_and_concurrent_requests_share_one_load(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    repo = tmp_path / "repo"
    for name in ("a", "c"):
        (repo / name).mkdir(parents=True)
        place(artifacts, repo, name, "1", 1.0)
    (repo / "tfhost.toml").write_text("[host]\nlazy = true\n[models.c]\nlazy = false\n")
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        assert versions(fleet, "a") == [] and versions(fleet, "c") == [1]
        loads: list[int] = []
        fleet.host.subscribe(
            lambda e: loads.append(1) if e.id.model == "a" and e.state is State.LOADING else None
        )
        results: list[float] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(scale_of(fleet.predict("a", {"x": SAMPLE_X})))
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [1.0, 1.0, 1.0]
        assert versions(fleet, "a") == [1] and len(loads) == 1


def test_the_budget_evicts_the_least_recently_used_idle_model(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    """Three process-isolated lazy models, room for two: a request for the third evicts
    the one used longest ago, and its worker (its memory) is gone."""
    repo = tmp_path / "repo"
    for name in ("a", "b", "c"):
        (repo / name).mkdir(parents=True)
        place(artifacts, repo, name, "1", 1.0)
    config = '[host]\nlazy = true\nisolation = "process"\n'
    (repo / "tfhost.toml").write_text(config)
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        for name in ("a", "b"):
            assert scale_of(fleet.predict(name, {"x": SAMPLE_X})) == 1.0
        fleet.predict("a", {"x": SAMPLE_X})  # b is now the least recently used
        used = sum(m.memory_bytes or 0 for m in fleet.models())
        assert used > 100 << 20  # two workers, each with TensorFlow imported
        # Room for what is loaded and half a worker more: c must evict one of them.
        (repo / "tfhost.toml").write_text(f"{config}memory_budget = {used + (128 << 20)}\n")
        fleet.reload()
        with fleet.acquire("a"):  # a handle: a cannot be evicted now
            assert scale_of(fleet.predict("c", {"x": SAMPLE_X})) == 1.0
        assert versions(fleet, "b") == [] and versions(fleet, "a") == versions(fleet, "c") == [1]
        assert len(workers()) == 2  # b's worker, and its memory, are gone
        assert sum(m.memory_bytes or 0 for m in fleet.models()) <= used + (128 << 20)
        # Evicted is not gone: a request brings it back (evicting the LRU again).
        assert scale_of(fleet.predict("b", {"x": SAMPLE_X})) == 1.0


def test_models_that_do_not_say_take_the_hosts_default_isolation(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    """``tfhost serve --isolation process`` (the host's default) puts every model whose
    config does not say in a worker; one whose config says ``inline`` stays inline."""
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        (repo / name).mkdir(parents=True)
        place(artifacts, repo, name, "1", 1.0)
    (repo / "tfhost.toml").write_text('[models.b]\nisolation = "inline"\n')
    host_settings = HostSettings(default_isolation="process")
    with Fleet(repo, settings=FAST, host_settings=host_settings).start(timeout=120) as fleet:
        isolation = {m.name: m.isolation for m in fleet.host.models()}
        assert isolation == {"a": Isolation.PROCESS, "b": Isolation.INLINE}
        assert len(workers()) == 1
        assert scale_of(fleet.predict("a", {"x": SAMPLE_X})) == 1.0


def test_a_changed_load_setting_is_said_and_the_serving_version_kept(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A version keeps what it was loaded with; a config that changes that says so
    rather than seeming to take effect."""
    (repo / "tfhost.toml").write_text("[models.m]\njit_compile = false\n")
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        (repo / "tfhost.toml").write_text("[models.m]\njit_compile = true\nlazy = false\n")
        with caplog.at_level("WARNING", logger="tfhost.fleet"):
            fleet.reload()
        said = [r.getMessage() for r in caplog.records if "changes" in r.getMessage()]
        assert said == [
            "config: model 'm' changes jit_compile; the versions it serves keep what they "
            "were loaded with until they load again (a new version, or a V2 repository "
            "unload and load)"
        ]
        serving = [m for m in fleet.models() if m.state is State.AVAILABLE]
        assert 2 in [m.version for m in serving]
        assert not any(m.jit_compile for m in serving)
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == 2.0


def test_an_unknown_default_isolation_is_refused() -> None:
    with pytest.raises(InputError, match="default_isolation must be 'inline' or 'process'"):
        HostSettings(default_isolation="weird")


def test_keras_files_in_version_folders_are_versions(
    tmp_path: Path, artifacts: ArtifactMap
) -> None:
    """``NAME/1/model.keras``, ``NAME/2/model.h5``: a Keras model with versions, each
    version folder holding its one file."""
    repo = tmp_path / "repo"
    for version, (fmt, scale) in {"1": (Format.KERAS, 1.0), "2": (Format.KERAS_H5, 2.0)}.items():
        folder = repo / "kver" / version
        folder.mkdir(parents=True)
        shutil.copy(artifacts[fmt, scale], folder / f"model{artifacts[fmt, scale].suffix}")
    (repo / "tfhost.toml").write_text('[models.kver]\nversion_policy = "all"\n')
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        assert versions(fleet, "kver") == [1, 2]
        for version, scale in ((1, 1.0), (2, 2.0)):
            answer = fleet.predict("kver", {"x": SAMPLE_X}, version=version)
            assert scale_of(answer) == pytest.approx(scale)


def test_nothing_to_evict_is_resource_exhausted(tmp_path: Path, artifacts: ArtifactMap) -> None:
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        (repo / name).mkdir(parents=True)
        place(artifacts, repo, name, "1", 1.0)
    (repo / "tfhost.toml").write_text(
        "[host]\nmemory_budget = 1\n[models.a]\npinned = true\n[models.b]\nlazy = true\n"
    )
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        with pytest.raises(ResourceExhausted) as caught:
            fleet.predict("b", {"x": SAMPLE_X})
        assert "budget" in str(caught.value)
        assert isinstance(caught.value, TfhostError)


def test_start_shows_each_model_live(repo: Path) -> None:
    import io

    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with Fleet(repo, settings=FAST).start(timeout=120, progress=console):
        pass
    shown = out.getvalue()
    for expected in ("model", "state", "memory MiB", "m", "k", "available"):
        assert expected in shown
    assert shown.endswith("┘\n")  # a log line after it starts on a line of its own


def test_a_label_moves_only_once_its_version_is_available(repo: Path) -> None:
    """TF Serving's rule: until the version a label now names is AVAILABLE, the label
    keeps serving its last version (here the new one is corrupt, so it never is)."""
    labels = '[models.m]\nversion_policy = "all"\nlabels = {{ canary = {} }}\n'
    (repo / "tfhost.toml").write_text(labels.format(2))
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X}, label="canary")) == 2.0
        bad = repo / "m" / ".incoming"
        bad.mkdir()
        (bad / "saved_model.pb").write_bytes(b"not a protobuf")
        bad.rename(repo / "m" / "3")
        (repo / "tfhost.toml").write_text(labels.format(3))
        wait_until(lambda: versions(fleet, "m", State.FAILED) == [3], 30, "v3 FAILED")
        assert fleet.labels("m") == {"canary": 3}
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X}, label="canary")) == 2.0
    loose = FleetSettings(poll_s=0.1, retry_backoff_s=0.2, labels_for_unavailable=True)
    with (
        Fleet(repo, settings=loose).start(timeout=120) as fleet,
        pytest.raises(TfhostError),  # it points at v3 as asked, and v3 cannot serve
    ):
        fleet.predict("m", {"x": SAMPLE_X}, label="canary")


def test_tf_servings_own_models_config(repo: Path) -> None:
    (repo / "models.config").write_text(
        "model_config_list {\n"
        "  config {\n"
        '    name: "m"\n'
        '    base_path: "m"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 1 } }\n"
        "  }\n"
        "}\n"
    )
    with Fleet(repo, settings=FAST).start(timeout=120) as fleet:
        assert versions(fleet, "m") == [1]
        assert scale_of(fleet.predict("m", {"x": SAMPLE_X})) == 1.0
        with pytest.raises(NotFound):  # only the models it lists are models
            fleet.predict("k", {"x": SAMPLE_X})
