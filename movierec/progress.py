"""Progress bars on stderr, off unless the CLI turns them on (library code stays quiet)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; a no-op bar when disabled, so callers need no branches."""
    return tqdm(iterable, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


def say(message: str, *, enabled: bool = True) -> None:
    """A status line on stderr (stdout is for results)."""
    if enabled:
        print(message, file=sys.stderr, flush=True)
