"""Checks of user-given options that end in one clear ``LandscapeError`` line."""
from __future__ import annotations

from typing import Sequence

from ..errors import LandscapeError


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    """Refuse ``value`` unless it is one of ``allowed``.

    Args:
        value: the option's value as given.
        allowed: the accepted values, in the order the message lists them.
        what: the option's name in the message (``"norm"``, ``"hvp method"``).

    Raises:
        LandscapeError: ``unknown <what> <value>: use one of <allowed>``.
    """
    if value not in allowed:
        raise LandscapeError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")
