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

SIGKILL cannot be caught: what was not flushed is lost.

A Python signal handler runs in the main thread, at its next Python instruction. A SIGTERM that
arrives just before the main thread blocks in C (a pool worker going idle, waiting on the lock
of its task queue, which the terminating parent holds) would wait for that instruction forever,
where the default action would have killed the process. So pytheus's own threads start with
SIGTERM blocked, and a small watchdog thread reads the signal wakeup file descriptor
(``signal.set_wakeup_fd``, when nobody else has set one): if the handler has not started 0.2 s
after a SIGTERM arrived, it sends the main thread SIGTERM again, which interrupts the blocking
call, and the handler runs.

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
    _watch_for_sigterm()


class _Watchdog:
    """The pipe whose write end is the signal wakeup fd, and the thread reading it."""

    def __init__(self, read: int, write: int) -> None:
        self.read, self.write = read, write
        self.pid = os.getpid()


_watchdog: _Watchdog | None = None
_handling = False  # set first thing by _on_sigterm: the main thread got to the handler


def _watch_for_sigterm() -> None:
    """Set the signal wakeup fd to a pipe of ours and start the watchdog (main thread only);
    nothing if a wakeup fd is already set (an event loop's: it must keep it)."""
    global _watchdog
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        earlier = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        earlier = None
    if earlier != -1:
        if earlier is not None:
            signal.set_wakeup_fd(earlier)
        os.close(read)
        os.close(write)
        return
    _watchdog = _Watchdog(read, write)
    start_without_sigterm(
        threading.Thread(target=_watch, args=(read,), name="pytheus-sigterm", daemon=True)
    )


def _watch(read: int) -> None:
    while True:
        try:
            received = os.read(read, 64)
        except OSError:
            return
        if not received:
            return
        if signal.SIGTERM.value not in received or _handling:
            continue
        time.sleep(0.2)  # a main thread running Python code gets to the handler before
        if not _handling:
            main = threading.main_thread().ident
            if main is not None:
                signal.pthread_kill(main, signal.SIGTERM)


def start_without_sigterm(thread: threading.Thread) -> None:
    """Start one of pytheus's own threads with SIGTERM blocked in it from its first instruction,
    so that the kernel delivers SIGTERM to a thread that does not block it, such as the main
    thread, which runs the handler.

    Delivered to another thread, a signal with a Python handler interrupts nothing in the main
    thread: blocked for good (a pool worker waiting on a queue lock that a terminated sibling
    held), the main thread would never run the handler, and the process would never end. The
    mask is set in the starting thread around ``start()`` (a new thread inherits it), not by
    the new thread itself, which may wait for the GIL while a SIGTERM arrives.
    """
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    global _handling
    _handling = True
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


_forking = threading.local()  # the mask of the thread that forks, while it forks


def _before_fork() -> None:
    """Block SIGTERM while forking: a SIGTERM that reached the child before it has a pipe of its
    own would write to the parent's pipe, and the parent's watchdog would end the parent."""
    if _watchdog is not None and hasattr(signal, "pthread_sigmask"):
        _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _restore_mask() -> None:
    mask = getattr(_forking, "mask", None)
    if mask is not None:
        _forking.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending SIGTERM arrives now


def _reset_after_fork() -> None:
    """A forked child keeps the handler (dispositions are inherited); its thread state is new.

    It also inherits the wakeup fd, the parent's pipe: left so, the parent's watchdog would read
    the child's signals. The child gets a pipe and a watchdog of its own, and only then takes
    the SIGTERM that may have arrived meanwhile (see ``_before_fork``).
    """
    global _lock, _watchdog, _handling
    _lock = threading.Lock()
    _handling = False
    inherited, _watchdog = _watchdog, None
    try:
        if inherited is not None:
            _own_pipe_after_fork(inherited)
    finally:
        _restore_mask()


def _own_pipe_after_fork(inherited: _Watchdog) -> None:
    try:
        current = signal.set_wakeup_fd(-1)
    except ValueError:
        return
    if current != inherited.write:  # someone else's since: put it back, leave our pipe alone
        signal.set_wakeup_fd(current)
        return
    os.close(inherited.read)
    os.close(inherited.write)
    if _sigterm_installed and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        _watch_for_sigterm()


os.register_at_fork(
    before=_before_fork, after_in_parent=_restore_mask, after_in_child=_reset_after_fork
)
