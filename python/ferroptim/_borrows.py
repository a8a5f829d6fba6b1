"""Native calls that borrow arrays outside an optimizer's step, and ``os.fork()``.

A call into ``ferroptim._core`` marks each array it reads or writes as borrowed in
rust-numpy's borrow tracker, then works with the GIL released and clears the marks when
it returns. A child forked while such a call runs in another thread inherits the marks,
but not the thread that would clear them, so it would refuse those arrays forever. The
optimizers' steps hold their optimizer's lock, which the optimizers' fork handler takes
(``optimizer.py``); every other such call (the clipping functions) runs inside
:data:`GATE`, which the same handler closes last: ``fork()`` waits for the calls running
in other threads to return, and calls that start meanwhile wait for the fork.
"""

from __future__ import annotations

import threading
from types import TracebackType


class Gate:
    """Counts the native calls running inside it; :meth:`close` waits until none runs
    and holds new ones back until :meth:`reopen` (or :meth:`reset` in a forked child)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Open, with no call running (a forked child: the parent's threads are gone)."""
        self._cond = threading.Condition(threading.Lock())
        self._running = 0
        self._closers = 0  # forks under way (two threads may fork at once)

    def __enter__(self) -> None:
        with self._cond:
            while self._closers:
                self._cond.wait()
            self._running += 1

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._cond:
            self._running -= 1
            if not self._running:
                self._cond.notify_all()

    def close(self) -> None:
        """Waits (with the GIL released) until no call runs; later calls wait for :meth:`reopen`."""
        with self._cond:
            self._closers += 1
            while self._running:
                self._cond.wait()

    def reopen(self) -> None:
        """Ends one :meth:`close` (in the parent, once it forked)."""
        with self._cond:
            self._closers -= 1
            if not self._closers:
                self._cond.notify_all()


#: The gate of every native call that borrows arrays outside a step.
GATE = Gate()
