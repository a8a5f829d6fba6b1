"""Native calls that borrow arrays outside an optimizer's step, and ``os.fork()``.

A call into ``ferroptim._core`` marks each array it reads or writes as borrowed in
rust-numpy's borrow tracker, then works with the GIL released and clears the marks when
it returns. A child forked while such a call runs in another thread inherits the marks,
but not the thread that would clear them, so it would refuse those arrays forever. The
optimizers' steps hold their optimizer's lock, which the optimizers' fork handler takes
(``optimizer.py``); every other such call (the clipping functions) runs holding its
thread's lock from :func:`held` (through ``_core.call_holding``), and the same handler
takes every thread's lock last:
``fork()`` waits for the calls running in other threads to return, and calls that start
meanwhile wait for the fork.

The locks are taken and released by ``_core.call_holding``, one native call, so an
asynchronous exception (Ctrl-C, a raising trace function) cannot leave one held, as it can
in a ``with`` statement or a count kept in Python. One lock per thread keeps calls in
different threads from waiting for each other.
"""

from __future__ import annotations

import threading
import weakref

_local = threading.local()
#: The lock of every thread that made such a call; a thread's lock goes with the thread.
_locks: weakref.WeakSet[threading.Lock] = weakref.WeakSet()
_taken: list[threading.Lock] = []


def held() -> threading.Lock:
    """This thread's lock, to hold around a native call that borrows arrays
    (``_core.call_holding(held(), ...)``). Made on first use; an interruption while it is
    made leaves at most an unused lock in the registry."""
    try:
        lock: threading.Lock = _local.lock
        return lock
    except AttributeError:
        lock = threading.Lock()
        _locks.add(lock)
        _local.lock = lock
        return lock


def close() -> None:
    """Waits (with the GIL released) until no such call runs, and holds new ones back until
    :func:`reopen`."""
    _taken[:] = list(_locks)
    for lock in _taken:
        lock.acquire()


def reopen() -> None:
    """Lets such calls run again, in the parent once it forked, and in the child."""
    for lock in reversed(_taken):
        lock.release()
    _taken.clear()
