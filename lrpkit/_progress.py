"""Progress of long loops: a tqdm bar, nothing, or a caller's callback.

Every long-running function takes ``progress``: ``True`` (a ``tqdm.auto`` bar), ``False``
(silent) or a callable ``progress(done, total)`` called after each step.  The callback is also
the cooperative cancellation point: an exception it raises (the explorer's worker raises
``Cancelled``) ends the computation there, with the function's own clean-up.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["iterate", "Progress"]

#: what a ``progress`` parameter accepts
Progress = bool | Callable[[int, int], Any]


def iterate(items: Iterable[T], progress: Progress, *, total: int | None = None,
            desc: str = "", leave: bool = False, disable: bool = False) -> Iterator[T]:
    """``items`` with progress reported as ``progress`` asks (see the module doc).

    ``disable``: no bar even when ``progress`` is ``True`` (e.g. a loop too short to show);
    a callback is still called.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = 0
    if callable(progress):
        for done, item in enumerate(items, 1):
            yield item
            progress(done, total)
        return
    if progress and not disable:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total or None, desc=desc, leave=leave)
        return
    yield from items
