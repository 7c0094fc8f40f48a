"""TensorFlow Serving's command line as ``tfhost serve`` reads it."""

from __future__ import annotations

import pytest

from tfhost.errors import InputError
from tfhost.serve.flags import UNSUPPORTED, translate


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
    assert translate(["--enable_batching=false", "--enable_model_warmup=true"]) == []


def test_arguments_after_a_double_dash_are_left_alone() -> None:
    assert translate(["--", "--ssl_config_file=x"]) == ["--", "--ssl_config_file=x"]
