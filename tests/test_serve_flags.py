"""TensorFlow Serving's command line as ``tfhost serve`` reads it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tfhost.batching import BatchingSettings
from tfhost.errors import InputError
from tfhost.serve.flags import UNSUPPORTED, batching_settings, translate


def test_supported_flags_pass_through_with_their_values() -> None:
    args = ["--port=8500", "--rest_api_port", "8501", "--model_name=m", "--model_base_path=/m"]
    assert translate(args) == args


def test_boolean_flags_take_tf_servings_true_and_false() -> None:
    flag = "--allow_version_labels_for_unavailable_models"
    assert translate([f"{flag}=true"]) == [flag]
    assert translate([f"{flag}=false"]) == []
    assert translate([flag]) == [flag]
    with pytest.raises(InputError, match="takes true or false, got 'maybe'"):
        translate([f"{flag}=maybe"])


@pytest.mark.parametrize("flag", sorted(UNSUPPORTED))
def test_an_unsupported_flag_is_refused_by_name(flag: str) -> None:
    with pytest.raises(InputError, match=f"does not take TensorFlow Serving's --{flag}:"):
        translate(["--port=1", f"--{flag}=1" if flag != "enable_model_warmup" else f"--{flag}=0"])


def test_an_unsupported_flag_asking_for_what_tfhost_does_is_taken() -> None:
    assert translate(["--enable_model_warmup=true"]) == []


def test_batching_flags_are_taken_with_tf_servings_spellings() -> None:
    assert "enable_batching" not in UNSUPPORTED
    assert "batching_parameters_file" not in UNSUPPORTED
    assert translate(["--enable_batching=true", "--batching_parameters_file=/b.txt"]) == [
        "--enable_batching",
        "--batching_parameters_file=/b.txt",
    ]
    assert translate(["--enable_batching=false"]) == []
    assert translate(["--enable_batching"]) == ["--enable_batching"]


def test_arguments_after_a_double_dash_are_left_alone() -> None:
    assert translate(["--", "--ssl_config_file=x"]) == ["--", "--ssl_config_file=x"]


# -- --enable_batching and --batching_parameters_file --------------------------------------


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "batching_parameters.txt"
    path.write_text(text)
    return path


def test_no_batching_unless_enabled() -> None:
    assert batching_settings(False, None) is None


def test_enable_batching_alone_is_tf_servings_defaults() -> None:
    assert batching_settings(True, None) == BatchingSettings()


def test_a_batching_parameters_file_is_read_field_for_field(tmp_path: Path) -> None:
    # TF Serving's documented form (serving/batching.md), every field tfhost takes.
    file = _file(
        tmp_path,
        """
        max_batch_size { value: 32 }
        batch_timeout_micros { value: 5000 }
        max_enqueued_batches { value: 100 }
        num_batch_threads { value: 3 }
        thread_pool_name { value: "model_server_batch_threads" }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 16
        allowed_batch_sizes: 32
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: false }
        """,
    )
    assert batching_settings(True, file) == BatchingSettings(
        max_batch_size=32,
        batch_timeout_micros=5000,
        max_enqueued_batches=100,
        num_batch_threads=3,
        allowed_batch_sizes=(8, 16, 32),
        pad_variable_length_inputs=True,
    )


def test_an_unset_field_keeps_its_default(tmp_path: Path) -> None:
    assert batching_settings(True, _file(tmp_path, "")) == BatchingSettings()
    file = _file(tmp_path, "batch_timeout_micros { value: 0 }\nmax_batch_size { value: 4 }")
    assert batching_settings(True, file) == BatchingSettings(max_batch_size=4)
    # An Int64Value written without its value is set, to 0: refused like any 0 batch size.
    with pytest.raises(InputError, match=r"max_batch_size must be a positive int, got 0$"):
        batching_settings(True, _file(tmp_path, "max_batch_size {}"))


def test_a_file_without_enable_batching_is_refused(tmp_path: Path) -> None:
    file = _file(tmp_path, "max_batch_size { value: 8 }")
    with pytest.raises(InputError, match="without --enable_batching: add --enable_batching"):
        batching_settings(False, file)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("max_batch_size { value: 8 }\n\nfoo: 1", r'line 3, column 1: .*no field named "foo"'),
        ("max_batch_size: 8", r'line 1, column \d+: .*Expected "\{"'),
        ("max_batch_size { value: 1.5 }", r"line 1, column \d+: .*Couldn't parse integer: 1.5"),
        ("max_batch_size { value: 8 }\nnum_batch_threads {", r'line 2, column \d+: .*Expected "}"'),
    ],
)
def test_a_parse_error_names_the_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    file = _file(tmp_path, text)
    with pytest.raises(InputError, match=rf"^--batching_parameters_file {file}: {error}"):
        batching_settings(True, file)


def test_a_value_tfhost_refuses_names_the_file_and_field(tmp_path: Path) -> None:
    cases = {
        "num_batch_threads { value: 0 }": "num_batch_threads must be a positive int, got 0",
        "batch_timeout_micros { value: -1 }": (
            "batch_timeout_micros must be a non-negative int, got -1"
        ),
        "max_batch_size { value: 8 } allowed_batch_sizes: 4": (
            "the last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            "4; expected 8"
        ),
    }
    for text, error in cases.items():
        file = _file(tmp_path, text)
        with pytest.raises(InputError) as caught:
            batching_settings(True, file)
        assert caught.value.message == f"--batching_parameters_file {file}: {error}"


def test_large_batch_splitting_is_refused_by_name(tmp_path: Path) -> None:
    file = _file(
        tmp_path,
        "enable_large_batch_splitting { value: true }\nmax_execution_batch_size { value: 4 }",
    )
    with pytest.raises(InputError) as caught:
        batching_settings(True, file)
    message = caught.value.message
    assert "enable_large_batch_splitting is not supported" in message
    assert "larger than max_batch_size runs on its own, unmerged" in message


def test_max_execution_batch_size_without_splitting_is_ignored_as_tf_serving_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # TF Serving reads it only under enable_large_batch_splitting (GetQueueOptions).
    file = _file(tmp_path, "max_batch_size { value: 8 }\nmax_execution_batch_size { value: 4 }")
    with caplog.at_level(logging.WARNING, logger="tfhost.serve.flags"):
        assert batching_settings(True, file) == BatchingSettings(max_batch_size=8)
    assert "max_execution_batch_size ignored" in caplog.text


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match=f"--batching_parameters_file {missing}: cannot read it"):
        batching_settings(True, missing)
