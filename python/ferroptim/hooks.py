"""``RemovableHandle``: what registering a hook returns, as ``torch.utils.hooks.RemovableHandle``."""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from typing import Any, Callable

_ids = itertools.count()


class RemovableHandle:
    """Removes one registered hook: ``handle.remove()``, or leave a ``with handle:`` block.

    The handle holds its registry weakly, so it does not keep an optimizer alive.

    Args:
        hooks_dict: the ordered registry the hook is stored in, under ``handle.id``.
    """

    def __init__(self, hooks_dict: OrderedDict[int, Callable[..., Any]]) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = next(_ids)

    def remove(self) -> None:
        """Unregisters the hook; removing it twice is harmless."""
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None:
            hooks_dict.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"RemovableHandle(id={self.id})"


def register(
    hooks_dict: OrderedDict[int, Callable[..., Any]], hook: Callable[..., Any], prepend: bool = False
) -> RemovableHandle:
    """Stores ``hook`` in ``hooks_dict`` (first when ``prepend``) and returns its handle."""
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    handle = RemovableHandle(hooks_dict)
    hooks_dict[handle.id] = hook
    if prepend:
        hooks_dict.move_to_end(handle.id, last=False)
    return handle
