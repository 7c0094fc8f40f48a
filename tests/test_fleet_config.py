"""The fleet's pure part: reading tfhost.toml and models.config, and scanning what is on disk.

Tiny fake artifacts stand in for models (the scanner and the config reader never open an
artifact); one test points at the real ones the suite builds.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tfhost import Format, WorkerSettings
from tfhost.fleet import (
    ConfigError,
    FleetConfig,
    ModelConfig,
    PipelineConfig,
    Scanner,
    VersionPolicy,
    parse_bytes,
    read_config,
)

from .conftest import ArtifactMap

# -- helpers ----------------------------------------------------------------------------


def saved_model(folder: Path, content: bytes = b"\x08\x01") -> Path:
    """A folder that looks like a SavedModel to anything that does not parse it."""
    (folder / "variables").mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(content)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def keras_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def after_clock_tick(reference: Path) -> None:
    """Return once the file system's clock has moved past every timestamp under
    ``reference``: a rename after this sets a ctime newer than its content's times."""
    newest = max(os.stat(reference).st_mtime_ns, os.stat(reference).st_ctime_ns)
    for folder, _, files in os.walk(reference):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            info = os.stat(name)
            newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    probe = reference.parent / ".tick"
    while True:
        probe.write_bytes(b"")
        if os.stat(probe).st_mtime_ns > newest:
            probe.unlink()
            return
        os.sched_yield()


def config_error(repo: Path, text: str, name: str = "tfhost.toml") -> ConfigError:
    write(repo / name, text)
    with pytest.raises(ConfigError) as caught:
        read_config(repo)
    return caught.value


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """a (TF Serving layout, versions 1 and 2), b.keras (one file)."""
    root = tmp_path / "repo"
    saved_model(root / "a" / "1")
    saved_model(root / "a" / "2")
    keras_file(root / "b.keras")
    return root


# -- the repository's layout --------------------------------------------------------------


def test_tf_serving_layout_leading_zeros_and_other_folders_ignored(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    saved_model(root / "ranker" / "00000123")
    saved_model(root / "ranker" / "7")
    saved_model(root / "ranker" / ".incoming" / "124")  # being uploaded: not a version
    saved_model(root / "ranker" / "tmp")
    (root / "ranker" / "12abc").mkdir()
    (root / "ranker" / "\uff19").mkdir()  # a full-width 9 is not a version number
    (root / "ranker" / "99").write_bytes(b"a file, not a version folder")
    saved_model(root / ".incoming" / "x" / "1")  # hidden: not a model
    write(root / "README.md", "notes")

    config = read_config(root)
    assert list(config.models) == ["ranker"]
    assert config.source is None
    assert config.models["ranker"] == ModelConfig("ranker", root / "ranker")

    versions = Scanner(config).scan()["ranker"]
    assert versions.on_disk == {7: root / "ranker" / "7", 123: root / "ranker" / "00000123"}
    assert versions.model == "ranker"


def test_two_folders_for_one_version_keep_the_canonical_one(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    saved_model(root / "m" / "001")
    saved_model(root / "m" / "1")
    versions = Scanner(read_config(root)).scan()["m"]
    assert versions.on_disk == {1: root / "m" / "1"}
    assert any("'001'" in p and "'1'" in p for p in versions.problems)


def test_single_file_artifacts_and_saved_model_folders_are_version_1(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    keras_file(root / "k.keras")
    (root / "h.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (root / "g.pb").write_bytes(b"graph")
    saved_model(root / "plain")  # a SavedModel folder, no version folders
    (root / "empty").mkdir()  # a model awaiting its first version
    write(root / "notes.txt", "not an artifact")
    write(root / "bad name.keras", "an artifact whose name is not a model name")

    config = read_config(root)
    assert sorted(config.models) == ["empty", "g", "h", "k", "plain"]
    assert config.models["k"].path == root / "k.keras"
    assert any("bad name.keras" in note for note in config.notes)
    seen = Scanner(config, trust_first_scan=True).scan()
    assert seen["k"].on_disk == {1: root / "k.keras"}
    assert seen["h"].on_disk == {1: root / "h.h5"}
    assert seen["g"].on_disk == {1: root / "g.pb"}
    assert seen["plain"].on_disk == {1: root / "plain"}
    assert seen["empty"].on_disk == {}
    assert seen["k"].settled == {1}


def test_a_name_both_folder_and_file_is_refused_unless_a_table_says_which(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    saved_model(root / "m" / "1")
    keras_file(root / "m.keras")
    with pytest.raises(ConfigError, match=r"model 'm' is each of"):
        read_config(root)
    write(root / "tfhost.toml", '[models.m]\npath = "m.keras"\n')
    assert read_config(root).models["m"].path == root / "m.keras"


def test_a_repository_that_is_a_saved_model_is_refused(tmp_path: Path) -> None:
    saved_model(tmp_path / "sm")
    with pytest.raises(ConfigError, match="is a SavedModel, not a repository"):
        read_config(tmp_path / "sm")


def test_real_artifacts_in_every_layout(tmp_path: Path, artifacts: ArtifactMap) -> None:
    """The suite's real artifacts, laid out in a repository, scan as their own versions
    and detect as their formats."""
    from tfhost.formats import detect

    root = tmp_path / "repo"
    shutil.copytree(artifacts[Format.TF2_SAVED_MODEL, 1.0], root / "tf2" / "0001")
    shutil.copytree(artifacts[Format.TF1_SAVED_MODEL, 1.0], root / "tf1" / "3")
    shutil.copytree(artifacts[Format.KERAS_EXPORT, 1.0], root / "export")
    shutil.copy(artifacts[Format.KERAS, 1.0], root / "k.keras")
    shutil.copy(artifacts[Format.KERAS_H5, 1.0], root / "h.h5")
    shutil.copy(artifacts[Format.FROZEN_GRAPH, 1.0], root / "frozen.pb")

    config = read_config(root)
    scanner = Scanner(config)
    first = scanner.scan()
    second = scanner.scan()  # nothing written between the two: all settled
    expected = {
        "tf2": (1, root / "tf2" / "0001", Format.TF2_SAVED_MODEL),
        "tf1": (3, root / "tf1" / "3", Format.TF1_SAVED_MODEL),
        "export": (1, root / "export", Format.KERAS_EXPORT),
        "k": (1, root / "k.keras", Format.KERAS),
        "h": (1, root / "h.h5", Format.KERAS_H5),
        "frozen": (1, root / "frozen.pb", Format.FROZEN_GRAPH),
    }
    assert sorted(first) == sorted(expected)
    for name, (version, path, fmt) in expected.items():
        assert first[name].on_disk == {version: path}, name
        assert second[name].settled == {version}, name
        assert detect(path).format is fmt, name


# -- tfhost.toml ------------------------------------------------------------------------

EVERY_KEY = """
[host]
memory_budget = "8GiB"
poll_interval_s = 0.5
isolation = "process"
version_policy = "all"
lazy = true
pinned = false
warmup = true
jit_compile = true
worker = { intra_op_threads = 2 }
custom_objects = { Scale = "tests.custom_layers:Scale" }
preload = ["tests.custom_layers"]

[models.a]
path = "a"
isolation = "process"
group = "shared"
version_policy = { latest = 2 }
labels = { stable = 1, canary = 7 }
custom_objects = { Other = "tests.custom_layers:Scale" }
preload = ["tests.custom_layers", "ops/my_ops.so"]
format_options = { tags = ["serve"] }
safe_mode = false
lazy = false
pinned = true
warmup = false
jit_compile = false

[models.a.worker]
intra_op_threads = 1
inter_op_threads = 4
gpu_memory_limit_mib = 512
spin_us = 0
max_restarts = 5
restart_backoff_s = 0.1
restart_window_s = 10.0
start_timeout_s = 30.0
cuda_visible_devices = ""
gpu_memory_growth = false

[pipelines.caption]
steps = ["a", "b"]
map = { b = { h = "embedding" } }
"""


def test_every_key_of_tfhost_toml(repo: Path) -> None:
    write(repo / "tfhost.toml", EVERY_KEY)
    config = read_config(repo)
    assert config.source == repo / "tfhost.toml"
    assert config.repo == repo
    assert config.memory_budget == 8 * 2**30
    assert config.poll_interval_s == 0.5
    assert config.models["a"] == ModelConfig(
        name="a",
        path=repo / "a",
        isolation="process",
        group="shared",
        version_policy=VersionPolicy("latest", latest=2),
        labels={"stable": 1, "canary": 7},
        custom_objects={"Other": "tests.custom_layers:Scale"},
        preload=("tests.custom_layers", str(repo / "ops" / "my_ops.so")),
        format_options={"tags": ("serve",), "safe_mode": False},
        lazy=False,
        pinned=True,
        warmup=False,
        worker=WorkerSettings(
            intra_op_threads=1,
            inter_op_threads=4,
            gpu_memory_limit_mib=512,
            spin_us=0,
            max_restarts=5,
            restart_backoff_s=0.1,
            restart_window_s=10.0,
            start_timeout_s=30.0,
            cuda_visible_devices="",
            gpu_memory_growth=False,
        ),
    )
    # b has no table: every [host] default
    assert config.models["b"] == ModelConfig(
        name="b",
        path=repo / "b.keras",
        isolation="process",
        version_policy=VersionPolicy("all"),
        lazy=True,
        jit_compile=True,
        custom_objects={"Scale": "tests.custom_layers:Scale"},
        preload=("tests.custom_layers",),
        worker=WorkerSettings(intra_op_threads=2),
    )
    assert config.pipelines == {
        "caption": PipelineConfig("caption", ("a", "b"), {"b": {"h": "embedding"}})
    }


def test_host_defaults_and_a_table_that_replaces_some(repo: Path) -> None:
    write(
        repo / "tfhost.toml",
        '[host]\nisolation = "process"\nlazy = true\nworker = { spin_us = 0 }\n'
        "[models.a]\nlazy = false\nworker = { max_restarts = 1 }\n",
    )
    a, b = read_config(repo).models.values()
    assert (a.isolation, a.lazy, a.worker) == ("process", False, WorkerSettings(max_restarts=1))
    assert (b.isolation, b.lazy, b.worker) == ("process", True, WorkerSettings(spin_us=0))


def test_no_config_file_gives_the_defaults(repo: Path) -> None:
    config = read_config(repo)
    assert config == FleetConfig(
        models={"a": ModelConfig("a", repo / "a"), "b": ModelConfig("b", repo / "b.keras")},
        repo=repo,
    )
    assert config.models["a"].version_policy == VersionPolicy("latest", latest=1)
    assert (config.memory_budget, config.source, config.pipelines) == (None, None, {})


def test_a_table_can_point_outside_the_repository(repo: Path, tmp_path: Path) -> None:
    saved_model(tmp_path / "elsewhere" / "5")
    write(repo / "tfhost.toml", f'[models.far]\npath = "{tmp_path / "elsewhere"}"\n')
    config = read_config(repo)
    assert sorted(config.models) == ["a", "b", "far"]
    assert config.models["far"].path == tmp_path / "elsewhere"
    assert Scanner(config).scan()["far"].on_disk == {5: tmp_path / "elsewhere" / "5"}


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("[modles.a]\n", "modles", "did you mean 'models'"),
        ("[host]\nmemory_budjet = 1\n", "host.memory_budjet", "did you mean 'memory_budget'"),
        ("[host]\ngroup = 'g'\n", "host.group", "[host] takes"),
        ("[models.a]\nversoin_policy = 'all'\n", "models.a.versoin_policy", "version_policy"),
        (
            "[models.a]\nworker = { intra_threads = 1 }\n",
            "models.a.worker.intra_threads",
            "intra_op_threads",
        ),
        ("[host]\nworker = { spin = 1 }\n", "host.worker.spin", "spin_us"),
        (
            "[models.a]\nformat_options = { output = ['y'] }\n",
            "models.a.format_options.output",
            "outputs",
        ),
        ("[pipelines.p]\nsteps = ['a', 'b']\nstep = 1\n", "pipelines.p.step", "steps"),
    ],
)
def test_unknown_keys_name_the_key_and_the_file(repo: Path, text: str, key: str, hint: str) -> None:
    error = config_error(repo, text)
    assert error.key == key
    assert error.file == repo / "tfhost.toml"
    assert str(error).startswith(f"{repo / 'tfhost.toml'}: {key}: unknown key")
    assert hint in str(error)


def test_a_syntax_error_names_the_line(repo: Path) -> None:
    error = config_error(repo, '[host]\nlazy = true\n[models.a\npath = "a"\n')
    assert (error.line, error.column) == (3, 10)
    assert str(error).startswith(f"{repo / 'tfhost.toml'}:3:10: not valid TOML")


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[models.a]\nisolation = 'thread'\n", "models.a.isolation", "'inline' or 'process'"),
        ("[models.a]\ngroup = 'g'\n", "models.a.group", "isolation = 'process'"),
        (
            "[models.a]\nversion_policy = { latest = 0 }\n",
            "models.a.version_policy.latest",
            "at least",
        ),
        ("[models.a]\nversion_policy = 'newest'\n", "models.a.version_policy", "{ latest = N }"),
        (
            "[models.a]\nversion_policy = { specific = [-1] }\n",
            "models.a.version_policy.specific",
            "non-negative",
        ),
        (
            "[models.a]\nlabels = { stable = 'one' }\n",
            "models.a.labels.stable",
            "must name a version",
        ),
        ("[models.a]\nlabels = { 'a/b' = 1 }\n", "models.a.labels", "is not a name"),
        (
            "[models.a]\ncustom_objects = { S = 'no_colon' }\n",
            "models.a.custom_objects.S",
            "module:attr",
        ),
        ("[models.a]\nlazy = 'yes'\n", "models.a.lazy", "true or false"),
        ("[host]\njit_compile = 1\n", "host.jit_compile", "true or false"),
        ("[models.a]\nworker = { intra_op_threads = -1 }\n", "models.a.worker", "non-negative int"),
        ("[models.a]\npath = 'missing'\n", "models.a.path", "no folder or artifact"),
        ("[models.ghost]\n", "models.ghost", "no folder or artifact"),
        ("[models.'../up']\npath = 'a'\n", "models.../up", "invalid model name"),
        (
            "[models.a]\ntags = ['serve']\nformat_options = { tags = ['x'] }\n",
            "models.a.tags",
            "given twice",
        ),
        ("[host]\nmemory_budget = '8 parsecs'\n", "host.memory_budget", "'8GiB'"),
        ("[host]\nmemory_budget = 0\n", "host.memory_budget", "more than 0"),
        ("[host]\npoll_interval_s = 0\n", "host.poll_interval_s", "positive"),
        ("models = 1\n", "models", "[models.NAME] tables"),
    ],
)
def test_bad_values_name_the_key_the_file_and_what_is_wrong(
    repo: Path, text: str, key: str, words: str
) -> None:
    error = config_error(repo, text)
    assert (error.file, error.key) == (repo / "tfhost.toml", key)
    assert str(error).startswith(f"{repo / 'tfhost.toml'}: {key}: ")
    assert words in error.what


def test_an_explicit_config_file(repo: Path, tmp_path: Path) -> None:
    elsewhere = write(
        tmp_path / "conf" / "fleet.toml", '[models.a]\npath = "../repo/a"\nlazy = true\n'
    )
    config = read_config(repo, elsewhere)
    assert config.source == elsewhere
    assert config.models["a"].path == repo / "a"  # relative to the config file's folder
    assert config.models["a"].lazy
    with pytest.raises(ConfigError, match="no such config file"):
        read_config(repo, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not a folder"):
        read_config(tmp_path / "no-repo")


def test_tfhost_toml_is_preferred_over_models_config(repo: Path) -> None:
    write(repo / "models.config", "model_config_list { }")
    write(repo / "tfhost.toml", "[models.a]\nlazy = true\n")
    assert read_config(repo).source == repo / "tfhost.toml"
    (repo / "tfhost.toml").unlink()
    config = read_config(repo)
    assert config.source == repo / "models.config"
    assert config.models == {}  # with models.config, only the models it lists


def test_reading_twice_gives_equal_configs(repo: Path) -> None:
    write(repo / "tfhost.toml", EVERY_KEY)
    assert read_config(repo) == read_config(repo)


# -- version policies and sizes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "on_disk", "chosen"),
    [
        (VersionPolicy(), [1, 2, 3], {3}),
        (VersionPolicy(), [], set()),
        (VersionPolicy("latest", latest=2), [5, 1, 9, 3], {5, 9}),
        (VersionPolicy("latest", latest=5), [1, 2], {1, 2}),
        (VersionPolicy("all"), [1, 2, 3], {1, 2, 3}),
        (VersionPolicy("all"), [], set()),
        (VersionPolicy("specific", specific=(2, 4)), [1, 2, 3, 4], {2, 4}),
        (VersionPolicy("specific", specific=(2, 7)), [1, 2, 3], {2}),  # 7 is not on disk
        (VersionPolicy("specific", specific=()), [1, 2], set()),
    ],
)
def test_version_policies_choose(
    policy: VersionPolicy, on_disk: list[int], chosen: set[int]
) -> None:
    assert policy.choose(on_disk) == chosen


def test_version_policies_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        VersionPolicy("latest", latest=0)
    with pytest.raises(ConfigError, match="'latest', 'all' or 'specific'"):
        VersionPolicy("newest")  # type: ignore[arg-type]
    assert VersionPolicy("specific", specific=(3, 1, 3)).specific == (1, 3)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        (0, 0),
        ("1024", 1024),
        ("512MiB", 512 * 2**20),
        ("8GiB", 8 * 2**30),
        ("8Gi", 8 * 2**30),
        ("8gib", 8 * 2**30),
        ("1.5GB", 1_500_000_000),
        ("8G", 8_000_000_000),
        ("8 GB", 8_000_000_000),
        ("2k", 2000),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("1TiB", 2**40),
        (4096.0, 4096),
    ],
)
def test_parse_bytes(value: int | float | str, size: int) -> None:
    assert parse_bytes(value) == size


@pytest.mark.parametrize("value", ["", "GiB", "8 parsecs", "-1GiB", "1e9", "8GiBs", -1, 1.5, True])
def test_parse_bytes_refuses(value: int | float | str) -> None:
    with pytest.raises(ConfigError):
        parse_bytes(value)


# -- models.config ----------------------------------------------------------------------


def test_models_config_paths_policies_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for name in ("latest", "two", "all", "specific"):
        saved_model(root / name / "1")
        saved_model(root / name / "2")
        saved_model(root / name / "3")
    saved_model(tmp_path / "far" / "1")
    saved_model(root / "unlisted" / "1")
    write(
        root / "models.config",
        f"""
model_config_list {{
  config {{ name: "latest" base_path: "latest" model_platform: "tensorflow" }}
  config {{
    name: "two"
    base_path: "{root / "two"}"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
    version_labels {{ key: "stable" value: 2 }}
    version_labels {{ key: "canary" value: 3 }}
  }}
  config {{ name: "all" base_path: "./all" model_version_policy {{ all {{}} }} }}
  config {{
    name: "specific"
    base_path: "specific"
    model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
  }}
  config {{ name: "far" base_path: "../far" model_version_policy {{ latest {{}} }} }}
}}
""",
    )
    config = read_config(root)
    assert config.source == root / "models.config"
    assert sorted(config.models) == ["all", "far", "latest", "specific", "two"]  # not "unlisted"
    models = config.models
    assert models["latest"] == ModelConfig("latest", root / "latest")
    assert models["two"] == ModelConfig(
        "two",
        root / "two",
        version_policy=VersionPolicy("latest", latest=2),
        labels={"stable": 2, "canary": 3},
    )
    assert models["all"].path == root / "all"
    assert models["all"].version_policy == VersionPolicy("all")
    assert models["specific"].version_policy == VersionPolicy("specific", specific=(1, 3))
    assert models["far"].path == tmp_path / "far"
    assert models["far"].version_policy == VersionPolicy("latest", latest=1)
    seen = Scanner(config).scan()
    chosen = {name: m.version_policy.choose(seen[name].on_disk) for name, m in models.items()}
    assert chosen == {
        "latest": {3},
        "two": {2, 3},
        "all": {1, 2, 3},
        "specific": {1, 3},
        "far": {1},
    }


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            'model_config_list {\n  config {\n    name: "a"\n    bse_path: "a"\n  }\n}\n',
            (4, 5),
            'no field named "bse_path"',
        ),
        # an unclosed block: the parser points at the last token it read
        ('model_config_list {\n  config {\n    name: "a"\n', (3, 11), 'Expected "}"'),
    ],
)
def test_models_config_parse_errors_name_line_and_column(
    repo: Path, text: str, line: tuple[int, int], words: str
) -> None:
    error = config_error(repo, text, "models.config")
    assert (error.line, error.column) == line
    assert str(error).startswith(f"{repo / 'models.config'}:{line[0]}:{line[1]}: ")
    assert words in str(error)


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ('name: "a" base_path: "a" model_platform: "pytorch"', "model_platform", "'pytorch'"),
        ('name: "a" base_path: "missing"', "base_path", "no folder or artifact"),
        ('name: "a"', "base_path", "empty"),
        ('name: "a b" base_path: "a"', "name", "invalid model name"),
        (
            'name: "a" base_path: "a" version_labels { key: "x/y" value: 1 }',
            "version_labels",
            "not a name",
        ),
    ],
)
def test_models_config_bad_entries(repo: Path, entry: str, key: str, words: str) -> None:
    error = config_error(
        repo, f"model_config_list {{\n\n  config {{ {entry} }}\n}}\n", "models.config"
    )
    assert error.key == f"model_config_list.config[0].{key}"
    assert error.line == 3  # the entry's line
    assert words in error.what


def test_models_config_twice_the_same_model_and_custom_config(repo: Path) -> None:
    twice = (
        'model_config_list { config { name: "a" base_path: "a" } '
        'config { name: "a" base_path: "a" } }'
    )
    assert "listed twice" in str(config_error(repo, twice, "models.config"))
    custom = "custom_model_config { }"
    assert "custom_model_config" in str(config_error(repo, custom, "models.config"))


# -- pipelines ----------------------------------------------------------------------------


def test_pipelines(repo: Path) -> None:
    keras_file(repo / "c.keras")
    write(
        repo / "tfhost.toml",
        '[pipelines.p]\nsteps = ["a", "b", "c"]\nmap = { c = { z = "y" } }\n'
        '[pipelines.q]\nsteps = ["a", "c"]\n',
    )
    pipelines = read_config(repo).pipelines
    assert pipelines["p"] == PipelineConfig("p", ("a", "b", "c"), {"c": {"z": "y"}})
    assert pipelines["q"] == PipelineConfig("q", ("a", "c"))


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('steps = ["a", "nope"]', "pipelines.p.steps", "'nope' is not a model"),
        ('steps = ["a"]', "pipelines.p.steps", "at least two"),
        ('steps = ["a", "a"]', "pipelines.p.steps", "more than once"),
        ("map = { b = {} }", "pipelines.p.steps", "missing"),
        ('steps = ["a", "b"]\nmap = { c = { x = "y" } }', "pipelines.p.map.c", "not a step"),
        ('steps = ["a", "b"]\nmap = { a = { x = "y" } }', "pipelines.p.map.a", "first step"),
        ('steps = ["a", "b"]\nmap = { b = { x = 1 } }', "pipelines.p.map.b.x", "non-empty string"),
        ('steps = "a"', "pipelines.p.steps", "array of strings"),
    ],
)
def test_pipelines_are_checked(repo: Path, text: str, key: str, words: str) -> None:
    error = config_error(repo, f"[pipelines.p]\n{text}\n")
    assert (error.file, error.key) == (repo / "tfhost.toml", key)
    assert words in error.what


def test_a_pipeline_cannot_take_a_models_name(repo: Path) -> None:
    error = config_error(repo, '[pipelines.a]\nsteps = ["a", "b"]\n')
    assert error.key == "pipelines.a"
    assert "name of a model" in error.what


# -- custom objects -----------------------------------------------------------------------


def test_custom_objects_resolve(repo: Path) -> None:
    from tests.custom_layers import Scale

    model = ModelConfig("a", repo / "a", custom_objects={"Scale": "tests.custom_layers:Scale"})
    assert model.resolve_custom_objects() == {"Scale": Scale}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("tests.no_such_module:Scale", "ModuleNotFoundError"),
        ("tests.custom_layers:NoSuchLayer", "AttributeError"),
    ],
)
def test_a_bad_custom_object_names_itself(repo: Path, spec: str, words: str) -> None:
    model = ModelConfig("a", repo / "a", custom_objects={"Layer": spec})
    with pytest.raises(ConfigError) as caught:
        model.resolve_custom_objects()
    assert caught.value.key == "custom_objects.Layer"
    assert f"model 'a': custom object 'Layer' = {spec!r}" in caught.value.what
    assert words in caught.value.what


def test_model_config_checks_what_is_built_in_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absolute"):
        ModelConfig("a", Path("relative"))
    with pytest.raises(ConfigError, match="invalid model name"):
        ModelConfig("../a", tmp_path)
    with pytest.raises(ConfigError, match="unknown key 'output'"):
        ModelConfig("a", tmp_path, format_options={"output": ["y"]})


# -- settled versions ---------------------------------------------------------------------


def test_a_version_being_written_stays_unsettled_until_it_stops_changing(repo: Path) -> None:
    scanner = Scanner(read_config(repo), trust_first_scan=True)
    assert scanner.scan()["a"].settled == {1, 2}

    version = repo / "a" / "3"
    saved_model(version)  # written in place
    seen = scanner.scan()["a"]
    assert set(seen.on_disk) == {1, 2, 3}
    assert seen.settled == {1, 2}  # first seen, not renamed in: wait one poll
    with (version / "variables" / "variables.data-00000-of-00001").open("ab") as f:
        f.write(b"weights")
    assert scanner.scan()["a"].settled == {1, 2}  # changed since the last scan
    with (version / "variables" / "variables.data-00000-of-00001").open("ab") as f:
        f.write(b"more weights")
    assert scanner.scan()["a"].settled == {1, 2}  # still changing
    assert scanner.scan()["a"].settled == {1, 2, 3}  # unchanged for one poll: complete
    assert scanner.scan()["a"].settled == {1, 2, 3}

    shutil.rmtree(repo / "a" / "1")
    seen = scanner.scan()["a"]
    assert set(seen.on_disk) == {2, 3}
    assert seen.settled == {2, 3}


def test_a_version_renamed_into_place_is_settled_when_first_seen(repo: Path) -> None:
    scanner = Scanner(read_config(repo))
    scanner.scan()
    staging = saved_model(repo / "a" / ".incoming" / "3")
    assert 3 not in scanner.scan()["a"].on_disk  # hidden while it is uploaded
    after_clock_tick(staging)
    staging.rename(repo / "a" / "3")
    seen = scanner.scan()["a"]
    assert 3 in seen.settled
    assert seen.on_disk[3] == repo / "a" / "3"


def test_a_single_file_renamed_into_place_is_settled(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".incoming").mkdir(parents=True)
    scanner = Scanner(read_config(root))
    scanner.scan()
    staged = keras_file(root / ".incoming" / "k.keras")
    after_clock_tick(staged)
    staged.rename(root / "k.keras")
    scanner.update(read_config(root))
    assert scanner.scan()["k"].settled == {1}
    keras_file(root / "w.keras")  # written in place
    scanner.update(read_config(root))
    assert scanner.scan()["w"].settled == frozenset()


def test_what_is_present_at_start(repo: Path) -> None:
    """At start, versions written in place are settled only with trust_first_scan."""
    config = read_config(repo)
    assert Scanner(config, trust_first_scan=True).scan()["a"].settled == {1, 2}
    cautious = Scanner(config)
    assert cautious.scan()["a"].settled == frozenset()
    assert cautious.scan()["a"].settled == {1, 2}  # one poll later


def test_a_config_reload_keeps_what_was_settled(repo: Path) -> None:
    scanner = Scanner(read_config(repo), trust_first_scan=True)
    scanner.scan()
    write(repo / "tfhost.toml", "[models.a]\nlazy = true\n")
    scanner.update(read_config(repo))
    assert scanner.scan()["a"].settled == {1, 2}
    assert scanner.scans == 2


def test_a_missing_model_path_is_a_problem_not_a_failure(repo: Path) -> None:
    scanner = Scanner(read_config(repo), trust_first_scan=True)
    shutil.rmtree(repo / "a")
    seen = scanner.scan()["a"]
    assert (dict(seen.on_disk), seen.settled) == ({}, frozenset())
    assert "no such folder or file" in seen.problems[0]


# -- the module itself --------------------------------------------------------------------


def test_every_model_config_field_is_a_tfhost_toml_key() -> None:
    """A field added to ModelConfig must be readable from [models.NAME] too."""
    from dataclasses import fields

    from tfhost.fleet import config

    assert {f.name for f in fields(ModelConfig)} - {"name"} == config._MODEL_KEYS


def test_reading_a_models_config_does_not_import_tensorflow(repo: Path) -> None:
    import subprocess
    import sys

    write(repo / "models.config", 'model_config_list { config { name: "a" base_path: "a" } }')
    code = (
        "import sys; from tfhost.fleet import read_config, Scanner; "
        f"Scanner(read_config({str(repo)!r})).scan(); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_a_scan_reports_each_versions_size_on_disk(tmp_path: Path) -> None:
    """The fleet's memory estimate before a load: what the scan saw, no second walk."""
    repo = tmp_path / "repo"
    folder = saved_model(repo / "m" / "1", b"x" * 1000)  # and a 5-byte variables.index
    (folder / "variables" / "variables.data").write_bytes(b"y" * 229)
    (versions,) = Scanner(read_config(repo), trust_first_scan=True).scan().values()
    assert versions.sizes == {1: 1234}
