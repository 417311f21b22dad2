"""Errors that name the caller option which would avoid them, without naming any front end's spelling.

Library code says what is wrong in its own terms ("resume it", "skip unreadable images") and
tags the error with the API parameter names involved; a front end maps those names to its own
syntax (the CLI appends the matching command-line flags).
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def suggest(error: E, *options: str) -> E:
    """Tag ``error`` with the API parameter names (e.g. ``"resume"``) that would avoid it."""
    error.options = options  # type: ignore[attr-defined]
    return error


def suggested_options(error: BaseException) -> tuple[str, ...]:
    """The parameter names ``suggest`` tagged ``error`` with (empty when untagged)."""
    return tuple(getattr(error, "options", ()))
