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
  through one of the paths above. Where the default is in force, it restores the default,
  runs the callbacks, and sends SIGTERM again, so the process still dies of the signal, with the
  usual exit status, within the callbacks' deadline. An ignored SIGTERM stays ignored. A server
  that puts the default back when it stops (uvicorn's workers do, then raise SIGTERM again)
  gets pytheus's handler instead, which ends the process the same way after the callbacks:
  ``signal.signal`` is wrapped for that one case.

The callbacks run on a thread of their own, which the caller waits for until the deadline:
called from a signal handler (an application's handler that calls ``os._exit``, say) they may
have interrupted code holding a lock they need, and the process must end all the same. They run
once per process; a second caller waits for the first run.

A Python signal handler runs in the main thread, at its next Python instruction. A SIGTERM that
arrives just before the main thread blocks in C (a pool worker going idle, waiting on the lock
of its task queue, which the terminating parent holds) would wait for that instruction forever,
where the default action would have killed the process. So pytheus's own threads start with
SIGTERM blocked, and once the process has something to flush (a forked child: from the start),
a small watchdog thread reads the signal wakeup file descriptor (``signal.set_wakeup_fd``, when
nobody else has set one): if the handler has not started 0.2 s after a SIGTERM arrived, it
wakes the main thread with SIGURG (given a handler that does nothing), which interrupts the
blocking call, and the SIGTERM handler, whoever installed it, runs. If pytheus's handler has
still not run 2 s after the SIGTERM (C code that retries the interrupted call itself), the
watchdog runs the callbacks and lets the process die of the signal itself.

SIGKILL cannot be caught: what was not flushed is lost.

Example::

    from pytheus.backends.process_end import at_process_end

    at_process_end(lambda deadline: flush_until(deadline))
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import sys
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

WAKE_SIGNAL = signal.SIGURG
"""What the watchdog wakes the main thread with: ignored by default, so nothing else uses it."""

_callbacks: list[Callback] = []
_lock = threading.Lock()
_original_exit = os._exit
_original_signal = signal.signal
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
            signal.signal = _signal
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
    _previous_sigterm = previous  # before the handler can run
    try:
        _original_signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        return
    _sigterm_installed = True


def _signal(signalnum: int, handler: Any) -> Any:
    """``signal.signal``, but SIGTERM set back to the default gets pytheus's handler (with the
    default behind it): the process still dies of SIGTERM, after the callbacks. (Also where
    the handler could not be installed before, the store having been made outside the main
    thread: uvicorn's workers serve a first scrape from a thread pool.)"""
    global _previous_sigterm, _sigterm_installed
    if (
        signalnum == signal.SIGTERM
        and handler == signal.SIG_DFL
        and _callbacks
        and threading.current_thread() is threading.main_thread()
    ):
        _previous_sigterm = signal.SIG_DFL
        _sigterm_installed = True
        return _original_signal(signalnum, _on_sigterm)
    return _original_signal(signalnum, handler)


def start_without_sigterm(thread: threading.Thread) -> None:
    """Start one of pytheus's own threads with SIGTERM blocked in it from its first instruction,
    so that the kernel delivers SIGTERM to a thread that does not block it, such as the main
    thread, which runs the handler.

    Delivered to another thread, a signal with a Python handler interrupts nothing in the main
    thread. The mask is set in the starting thread around ``start()`` (a new thread inherits
    it), not by the new thread itself, which may wait for the GIL while a SIGTERM arrives.
    """
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# --- running the callbacks --------------------------------------------------------------------


class _Run:
    """The one run of the callbacks in this process: its thread, and when it started."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.finished = threading.Event()


_run: _Run | None = None
_run_lock = threading.Lock()


def run_callbacks(deadline: float | None = None) -> None:
    """Run every callback, once per process, on a thread of its own; wait for it until
    ``deadline`` (default :data:`EXIT_SECONDS` away). A second caller waits for the first run.

    Never raises and never waits past the deadline: this runs on the way out.
    """
    global _run
    if deadline is None:
        deadline = time.monotonic() + EXIT_SECONDS
    with _run_lock:
        run = _run
        starting = run is None or run.pid != os.getpid()
        if starting:
            run = _run = _Run()
    assert run is not None
    if starting:
        thread = threading.Thread(
            target=_run_all, args=(run, deadline), name="pytheus-exit", daemon=True
        )
        try:
            start_without_sigterm(thread)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            _run_all(run, deadline)
            return
    while not run.finished.wait(0.05):
        if time.monotonic() > deadline + 0.5:
            return


def _run_all(run: _Run, deadline: float) -> None:
    try:
        for callback in list(_callbacks):
            try:
                callback(deadline)
            except BaseException:  # nothing may keep the process from ending
                logger.exception("pytheus: a step at the end of the process failed")
    finally:
        run.finished.set()


def _exit(status: int) -> NoReturn:
    """``os._exit``, after the callbacks."""
    run_callbacks()
    _original_exit(status)


# --- SIGTERM ---------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _handling
    _handling = True
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)  # the application ends its own way, through exit or os._exit
        return
    _original_signal(signum, signal.SIG_DFL)  # a second SIGTERM now kills at once
    finishing = threading.Thread(
        target=_finish_then_die, args=(signum,), name="pytheus-sigterm-exit", daemon=True
    )
    try:
        finishing.start()
    except RuntimeError:  # the interpreter is shutting down: atexit runs the callbacks
        return
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


# --- the watchdog ----------------------------------------------------------------------------


class _Watchdog:
    """The pipe whose write end is the signal wakeup fd, and the thread reading it."""

    def __init__(self, read: int, write: int) -> None:
        self.read, self.write = read, write
        self.pid = os.getpid()


_watchdog: _Watchdog | None = None
_handling = False  # set first thing by _on_sigterm: the main thread got to the handler


def arm_watchdog() -> None:
    """Start the watchdog of this process, if pytheus's SIGTERM handler is installed, nobody
    else has set a wakeup fd and the caller is the main thread (else nothing). Backends call it
    once they have something to flush."""
    global _watchdog
    if (
        not _sigterm_installed
        or (_watchdog is not None and _watchdog.pid == os.getpid())
        or threading.current_thread() is not threading.main_thread()
    ):
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    watchdog = _Watchdog(read, write)
    _watchdog = watchdog  # before the wakeup fd: a fork from another thread sees it
    try:
        earlier = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        earlier = None
    if earlier != -1:  # an event loop's: it must keep it
        if earlier is not None:
            signal.set_wakeup_fd(earlier)
        _watchdog = None
        os.close(read)
        os.close(write)
        return
    if signal.getsignal(WAKE_SIGNAL) == signal.SIG_DFL:
        _original_signal(WAKE_SIGNAL, _wake)
    start_without_sigterm(
        threading.Thread(target=_watch, args=(read,), name="pytheus-sigterm", daemon=True)
    )


def _wake(signum: int, frame: FrameType | None) -> None:
    """Nothing: being called interrupted the blocking call, and pending handlers run now."""


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
        if _handling:
            continue
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, WAKE_SIGNAL)
        time.sleep(1.8)
        if not _handling and _default_behind_ours():
            _end_from_this_thread()


def _default_behind_ours() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm and _previous_sigterm == signal.SIG_DFL


def _end_from_this_thread() -> None:
    """The main thread is stuck in C that retries what a signal interrupts: run the callbacks
    here, then die of SIGTERM (the default set through libc: only the main thread may call
    ``signal.signal``)."""
    run_callbacks()
    try:
        ctypes.CDLL(None).signal(signal.SIGTERM, 0)  # SIG_DFL
    except (OSError, AttributeError):
        return
    os.kill(os.getpid(), signal.SIGTERM)


# --- fork ------------------------------------------------------------------------------------

_forking = threading.local()  # the mask of the thread that forks, while it forks


def _before_fork() -> None:
    """Block SIGTERM while forking, whenever a Python handler takes it (ours, or one ours chains
    to), not only once there is a watchdog.

    CPython forgets the signals a child caught before its own after-fork step: the C handler
    only marks them, and the child clears the marks so that it does not run the parent's
    handlers (bpo-9535). A SIGTERM sent to a child that has just been forked, before it runs
    (``Pool.terminate()`` ends a worker that ``maxtasksperchild`` just replaced), would be lost:
    the default action would have killed the child, but it goes on and blocks for ever on the
    lock of its task queue, which the terminating parent holds. Blocked, the SIGTERM waits in
    the kernel until ``_reset_after_fork`` unblocks it, after that step. With a watchdog, a
    SIGTERM that reached the child before it has a pipe of its own would also write to the
    parent's pipe, and the parent's watchdog would read it."""
    if (_sigterm_installed or _watchdog is not None) and hasattr(signal, "pthread_sigmask"):
        _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _after_asyncio()


_rewake_registered = False


def _after_asyncio() -> None:
    """Once asyncio is imported, have ``_rewake_after_fork`` run in children after its own
    after-fork step (hooks run in the order they were registered).

    Since Python 3.12, asyncio's step (``asyncio.events.on_fork``) sets the child's signal
    wakeup fd to -1, as its event loop is gone; registered after ours (asyncio imported later,
    by redis-py say), it would take away the pipe the child's watchdog reads, and a SIGTERM that
    came just before the main thread blocked would wait for ever. Registered before the fork, a
    hook runs in that fork's child.
    """
    global _rewake_registered
    if not _rewake_registered and "asyncio.events" in sys.modules:
        _rewake_registered = True
        os.register_at_fork(after_in_child=_rewake_after_fork)


def _rewake_after_fork() -> None:
    """Give the watchdog of this child its wakeup fd back, if asyncio took it away."""
    watchdog = _watchdog
    if watchdog is None or watchdog.pid != os.getpid():
        return
    try:
        current = signal.set_wakeup_fd(watchdog.write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        return
    if current not in (-1, watchdog.write):
        signal.set_wakeup_fd(current)  # someone else's since: theirs


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

    It gets a watchdog also where the parent had none (it had recorded nothing yet): a child is
    what ``Pool.terminate()`` sends SIGTERM to as soon as ``maxtasksperchild`` replaced it, and
    its handler must run even when the SIGTERM comes just before it blocks on the lock of its
    task queue, which the terminating parent holds.
    """
    global _lock, _run_lock, _watchdog, _handling
    _lock = threading.Lock()
    _run_lock = threading.Lock()
    _handling = False
    inherited, _watchdog = _watchdog, None
    try:
        if inherited is not None:
            _own_pipe_after_fork(inherited)
        else:
            arm_watchdog()  # nothing where pytheus's handler is not in force
    finally:
        _restore_mask()


def _own_pipe_after_fork(inherited: _Watchdog) -> None:
    try:
        current = signal.set_wakeup_fd(-1)
    except ValueError:
        current = None
    if current is not None and current != inherited.write:
        signal.set_wakeup_fd(current)  # someone else's since: put it back
        current = None
    os.close(inherited.read)
    os.close(inherited.write)
    if current is not None:
        arm_watchdog()


os.register_at_fork(
    before=_before_fork, after_in_parent=_restore_mask, after_in_child=_reset_after_fork
)
