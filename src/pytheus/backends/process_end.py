"""A last step however a process ends: returning, ``sys.exit``, an uncaught exception,
``os._exit`` or SIGTERM.

A backend that keeps values in memory until a background flush (Redis) must flush them before
the process is gone. ``atexit`` covers only the first three, and only in the main interpreter
process: multiprocessing's fork and forkserver children and task queues' work horses (RQ) leave
through ``os._exit``, and ``Pool.__exit__``, ``Process.terminate()``, ``docker stop`` and
Kubernetes end processes with SIGTERM, whose default action kills without running any Python.

:func:`at_process_end` covers all five:

- ``atexit``, for the ordinary ends;
- ``os._exit`` is wrapped: the wrapper runs the callbacks, then the original;
- SIGTERM: a handler is installed (from the main thread) only where the disposition is the
  default or a Python handler, and it chains. After a Python handler that was there before
  (gunicorn's, uvicorn's, Celery's), it simply calls that handler: the application then ends
  through one of the paths above. Where the default was in force, it restores the default,
  runs the callbacks on a thread (never inside the handler, which may have interrupted code that
  holds a lock the callbacks need) and sends SIGTERM again, so the process still dies of the
  signal, with the usual exit status, within the callbacks' deadline. An ignored SIGTERM stays
  ignored.

SIGKILL cannot be caught: what was not flushed is lost. The handler runs when the main thread
next executes Python code, as every Python signal handler does.

Example::

    from pytheus.backends.process_end import at_process_end

    at_process_end(lambda deadline: flush_until(deadline))
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

logger = logging.getLogger("pytheus.backends")

EXIT_SECONDS = 5.0
"""How long the callbacks may take at the end of a process (SIGTERM included)."""

Callback = Callable[[float], None]
"""Called with a deadline (a ``time.monotonic()`` value) it should finish by."""

_callbacks: list[Callback] = []
_lock = threading.Lock()
_original_exit = os._exit
_previous_sigterm: Any = None
_sigterm_installed = False
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def at_process_end(callback: Callback) -> None:
    """Call ``callback(deadline)`` when this process ends (any fork of it too); idempotent.

    Installs the hooks on first use; the SIGTERM handler only when called from the main thread
    (call again from there, as ``load_backend`` at start-up does, to install it).
    """
    with _lock:
        if callback not in _callbacks:
            _callbacks.append(callback)
        if os._exit is _original_exit:
            os._exit = _exit
            atexit.register(run_callbacks)
    install_sigterm_handler()


def install_sigterm_handler() -> None:
    """Chain a SIGTERM handler before the one in force, if that is the default or Python's."""
    global _previous_sigterm, _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main interpreter
        return
    if previous is None or previous == signal.SIG_IGN or previous is _on_sigterm:
        return  # set outside Python (cannot chain to it), or ignored on purpose
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        return
    _previous_sigterm = previous
    _sigterm_installed = True


def run_callbacks(deadline: float | None = None) -> None:
    """Run every callback once more, until ``deadline`` (default :data:`EXIT_SECONDS` away).

    Never raises: this runs on the way out.
    """
    if deadline is None:
        deadline = time.monotonic() + EXIT_SECONDS
    for callback in list(_callbacks):
        try:
            callback(deadline)
        except BaseException:  # nothing may keep the process from ending
            logger.exception("pytheus: a step at the end of the process failed")


def _exit(status: int) -> NoReturn:
    """``os._exit``, after the callbacks."""
    run_callbacks()
    _original_exit(status)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)  # the application ends its own way, through exit or os._exit
        return
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM now kills at once
    finishing = threading.Thread(
        target=_finish_then_die, args=(signum,), name="pytheus-exit", daemon=True
    )
    finishing.start()
    if _inside_pytheus(frame):
        return  # the interrupted code may hold a lock the callbacks need: let it go on
    # Otherwise the main thread waits here: it must not carry on as if nothing had happened
    # (out of signal.pause(), say) while the process is being ended.
    finishing.join(EXIT_SECONDS + 1.0)
    os.kill(os.getpid(), signum)


def _inside_pytheus(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            return True
        frame = frame.f_back
    return False


def _finish_then_die(signum: int) -> None:
    try:
        run_callbacks()
    finally:
        os.kill(os.getpid(), signum)


def _reset_after_fork() -> None:
    """A forked child keeps the handler (dispositions are inherited); its thread state is new."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
