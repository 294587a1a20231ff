"""Keyword options checked against the fields of a settings value.

A function with many optional settings (:func:`geogan.render`, :func:`geogan.dream.dream_map`, ...) takes
them as ``**options``: each name must be a field of the frozen dataclass that holds them, and that dataclass
checks the values at construction. A name it does not know is an :class:`UnknownOptionError` naming the
keyword and the nearest valid one, before any work.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Iterable, Mapping, TypeVar

from .errors import InputError

T = TypeVar("T")


class UnknownOptionError(InputError, TypeError):
    """A keyword argument the function does not take: a one-line :class:`~geogan.errors.InputError` for the
    fronts, and a TypeError, as Python's own for an unexpected keyword argument."""


def field_names(cls: type) -> tuple[str, ...]:
    """The init fields of a dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def check_names(names: Iterable[str], valid: Iterable[str], function: str) -> None:
    """Refuse the first of ``names`` (sorted) not in ``valid``, naming the nearest valid one."""
    valid = tuple(valid)
    unknown = sorted(set(names) - set(valid))
    if not unknown:
        return
    name = unknown[0]
    nearest = difflib.get_close_matches(name, valid, n=1, cutoff=0.0)
    hint = f"; the nearest is '{nearest[0]}'" if nearest else ""
    raise UnknownOptionError(f"{function}() got an unexpected keyword argument '{name}'{hint} "
                             f"(it takes {', '.join(valid)})")


def with_options(value: T, options: Mapping[str, object], function: str) -> T:
    """``value`` (a frozen dataclass) with the fields named in ``options`` replaced, checked again."""
    check_names(options, field_names(type(value)), function)
    return dataclasses.replace(value, **options) if options else value
