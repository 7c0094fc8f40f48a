"""The format options each loader takes (``Host.load(..., **format_options)``), in one place.

``FORMAT_OPTIONS`` is the one list: ``checked`` refuses an option a format does not take
(``output=`` for ``outputs=`` is an error, never silently ignored), and what it hands the
loader refuses a read of an option the list does not name, so the list and the loaders
cannot drift apart unnoticed. Pure Python, no TensorFlow.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from tfhost.errors import InputError, InternalError
from tfhost.specs import Format

_SAVED_MODEL = frozenset({"tags"})  # the MetaGraph to load, by its tags
_KERAS = frozenset({"safe_mode"})  # False: run code the file stores (a Lambda); trust it first

FORMAT_OPTIONS: Mapping[Format, frozenset[str]] = {
    Format.TF1_SAVED_MODEL: _SAVED_MODEL,
    Format.TF2_SAVED_MODEL: _SAVED_MODEL,
    Format.KERAS_SAVED_MODEL: _SAVED_MODEL,
    Format.KERAS_EXPORT: _SAVED_MODEL,
    # the tensors to feed and fetch, by name ("x" or "x:0"); default: placeholders, and
    # the tensors no op reads
    Format.FROZEN_GRAPH: frozenset({"inputs", "outputs"}),
    Format.KERAS: _KERAS,
    Format.KERAS_H5: _KERAS,
}


class FormatOptions(Mapping[str, Any]):
    """The options a loader gets: the caller's, read only by the names its format takes."""

    def __init__(self, fmt: Format, given: Mapping[str, Any]) -> None:
        self._format = fmt
        self._given = dict(given)

    def __getitem__(self, key: str) -> Any:
        if key not in FORMAT_OPTIONS[self._format]:
            raise InternalError(
                f"the {self._format.value} loader reads option {key!r}, which "
                f"formats/options.py FORMAT_OPTIONS does not declare for it"
            )
        return self._given[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)


def checked(model: str, fmt: Format, given: Mapping[str, Any]) -> FormatOptions:
    """``given`` for ``fmt``'s loader; InputError naming every option ``fmt`` does not take."""
    valid = FORMAT_OPTIONS[fmt]
    unknown = sorted(set(given) - valid)
    if unknown:
        hints = [
            f"{name!r} (did you mean {match[0]!r}?)"
            if (match := difflib.get_close_matches(name, valid, n=1))
            else repr(name)
            for name in unknown
        ]
        takes = ", ".join(repr(v) for v in sorted(valid)) or "none"
        raise InputError(
            f"model {model!r}: unknown {'option' if len(unknown) == 1 else 'options'} "
            f"{', '.join(hints)} for a {fmt.value} artifact; it takes {takes}"
        )
    return FormatOptions(fmt, given)
