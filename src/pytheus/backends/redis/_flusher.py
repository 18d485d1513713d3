"""Moving this process's pending values to Redis: batches, retries, recovery after restarts.

Each batch has a sequence number that the flush script checks, so retrying a batch whose reply
was lost never applies it twice. When Redis lost data (it restarted without persistence, or lost
the last writes), the script reports the last batch it still has: the missing batches are sent
again from a short history, or, when they are older than that, this process re-sends its whole
contribution. Only the flusher talks to Redis on behalf of the metrics; the application's
threads never wait for it.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pytheus.backends.process_end import (
    arm_watchdog,
    install_sigterm_handler,
    start_without_sigterm,
)
from pytheus.backends.redis._config import RedisOptions
from pytheus.backends.redis._protocol import GAP, Entry, FlushArgs, FlushReply, Op, batch_args
from pytheus.backends.redis._scripts import FLUSH
from pytheus.backends.redis._values import RedisNativeHistogram

logger = logging.getLogger("pytheus.backends.redis")


class FlushedValue(Protocol):
    sid: str | None  # the series id the flusher holds it under

    def take(self) -> list[Op]: ...
    def totals(self) -> list[Op]: ...
    def refresh(self) -> list[Op]: ...


@dataclass(frozen=True)
class Batch:
    seq: int
    entries: tuple[Entry, ...]  # (series id, description, ops)
    removals: tuple[str, ...] = ()  # series ids removed before the entries apply

    def arguments(self) -> list[str]:
        return batch_args(self.removals, self.entries)


class Flusher:
    def __init__(self, client: Any, options: RedisOptions) -> None:
        self.client = client
        self.options = options
        self.process = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self.heartbeat_ttl = max(30, int(10 * max(options.flush_interval, 1.0)))
        self._series: dict[str, tuple[str, FlushedValue]] = {}
        self._series_lock = threading.Lock()
        self._removals: list[str] = []
        # values changed since the last batch (each queues itself once; its sid says which)
        self.queue: list[Any] = []
        self._flush_lock = threading.Lock()
        self._script = client.register_script(FLUSH)
        self._seq = 0
        self._acked = -1
        self._unacked: Batch | None = None
        self._uncertain: int | None = None  # a dropped batch that may have reached Redis
        self._history: collections.deque[Batch] = collections.deque(maxlen=64)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._close_lock = threading.Lock()
        self.healthy = True
        self.dropped_updates = 0
        self._last_error_log = 0.0
        self._last_refresh = time.monotonic()
        self._pid = os.getpid()  # a forked child inherits this object (and the exit hooks)
        self._said_goodbye = False
        # called after each flush Redis acknowledged, and when Redis lost data (descriptions)
        self.on_flushed: Callable[[], None] | None = None
        self.on_lost: Callable[[], None] | None = None

    # --- registration and the background thread -------------------------------------------

    def register(self, sid: str, meta: str, value: FlushedValue) -> None:
        with self._series_lock:
            if sid not in self._series:
                self._series[sid] = (meta, value)
                value.sid = sid
        if self._thread is None:
            self._start()

    def remove(self, sid: str) -> None:
        """Forget a series here and delete it from Redis with the next batch."""
        with self._series_lock:
            self._series.pop(sid, None)  # a value queued before: its sid finds nothing now
            self._removals.append(sid)
        if self._thread is None:  # a process may remove series it never recorded into
            self._start()

    def value_of(self, sid: str) -> FlushedValue | None:
        found = self._series.get(sid)
        return found[1] if found else None

    def _start(self) -> None:
        with self._series_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="pytheus-redis-flush", daemon=True
            )
            start_without_sigterm(self._thread)
        # something to flush now: make sure a SIGTERM flushes it (process_end), if the store was
        # made outside the main thread (a scrape served from a thread pool) and this is in it
        install_sigterm_handler()
        arm_watchdog()

    def _run(self) -> None:
        interval = self.options.flush_interval or 1.0
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception:  # never let the thread die
                logger.exception("pytheus: unexpected error while flushing to Redis")

    def close(self, deadline: float | None = None) -> None:
        """Stop the thread and flush what is pending, retrying until ``deadline`` (a
        ``time.monotonic()`` value; default: one try). Called when the process ends (see
        :mod:`pytheus.backends.process_end`) or the backend is replaced.

        Once everything is acknowledged, the process also says goodbye: from then on it counts
        as dead for every scrape (its native histograms are folded at once) and flushes no more.
        Only in the process that created the flusher, and only once it has recorded: a forked
        child, which inherits it, has a flusher of its own. A second caller waits for the first.
        """
        if os.getpid() != self._pid or self._thread is None:
            return
        with self._close_lock:
            if self._stop.is_set():
                return
            self._stop.set()
            try:
                while not self.flush():
                    if deadline is None or time.monotonic() > deadline:
                        self._lost_at_exit()
                        return
                    time.sleep(0.05)
                self._say_goodbye()
            except Exception:
                logger.exception("pytheus: could not flush metrics to Redis at exit")

    def _lost_at_exit(self) -> None:
        with self._series_lock:
            pending = len(self.queue) + (len(self._unacked.entries) if self._unacked else 0)
        if pending:
            logger.error(
                "pytheus: Redis at %s did not take this process's last metrics before it ended; "
                "%d series update(s) are lost",
                self.options.address,
                pending,
            )

    def _say_goodbye(self) -> None:
        with self._flush_lock:
            if self._unacked is not None or self.queue or self._removals:
                return  # recorded meanwhile: rather be found dead by the heartbeat's expiry
            self._said_goodbye = True
            self._send(self._acked, self._acked, batch_args((), ()), bye=True)

    # --- flushing -------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Send what is pending; True when Redis acknowledged everything up to now."""
        with self._flush_lock:
            if self._said_goodbye:
                return False
            try:
                if self._send_pending():  # series were removed: send at once what they count
                    self._send_pending()
            except Exception as error:
                if _is_refusal(error):  # Redis refused the batch: retrying won't help
                    self._refused(error)
                else:  # Redis is down or unreachable (or its reply unreadable): keep it
                    self._failed(error)
                return False
        if not self.healthy:
            logger.warning("pytheus: Redis at %s is reachable again", self.options.address)
        self.healthy = True
        if self.on_flushed is not None:
            self.on_flushed()
        return True

    def _send_pending(self) -> bool:
        """Send the batch in flight, or a new one; True if Redis skipped removed series."""
        if self._unacked is None:
            self._unacked = self._take_batch()
        batch = self._unacked
        if batch is None:  # nothing new: a heartbeat, which also reveals lost data
            status, last, skipped = self._send(self._acked, self._acked, batch_args((), ()))
        else:
            status, last, skipped = self._send(batch.seq, self._acked, batch.arguments())
        if self._uncertain is not None and last == self._uncertain:
            # the batch dropped during the outage had reached Redis after all
            self._acked, self._uncertain = last, None
            if batch is not None and status == GAP:
                status, last, skipped = self._send(batch.seq, self._acked, batch.arguments())
        if status == GAP or (batch is None and last < self._acked):
            return self._recover(last)
        if batch is not None:
            self._acknowledge(batch)
        return self._rebase(skipped)

    def _take_batch(self) -> Batch | None:
        queue = self.queue
        changed = queue[:]
        del queue[: len(changed)]  # values queued meanwhile stay for the next batch
        with self._series_lock:
            removals, self._removals = tuple(self._removals), []
            series: list[tuple[str, str, Any]] = []
            for value in changed:
                sid = value.sid
                held = self._series.get(sid) if sid is not None else None
                if held is not None and held[1] is value:  # not removed since it was queued
                    series.append((sid, held[0], value))
        entries = tuple(
            (sid, meta, tuple(ops)) for sid, meta, value in series if (ops := value.take())
        )
        now = time.monotonic()
        if now - self._last_refresh > self.options.expire_key_time / 3:
            # series expire when no living process holds them: refresh everything we hold
            self._last_refresh = now
            entries += self._refresh_entries({sid for sid, _, _ in entries})
        if not entries and not removals:
            return None
        self._seq += 1
        return Batch(self._seq, entries, removals)

    def _refresh_entries(self, skip: set[str]) -> tuple[Entry, ...]:
        with self._series_lock:
            series = [(sid, meta, v) for sid, (meta, v) in self._series.items() if sid not in skip]
        return tuple((sid, meta, tuple(value.refresh())) for sid, meta, value in series)

    def _send(
        self, seq: int, expected: int, arguments: list[str], resync: bool = False, bye: bool = False
    ) -> FlushReply:
        """Run the flush script: its status, the last batch Redis has from this process, and
        the series whose entries it skipped because they were removed (see ``_rebase``).
        ValueError for a reply of another shape (kept and retried, as a network fault)."""
        args = FlushArgs(
            self.options.base, self.process, seq, expected, self.options.expire_key_time,
            self.heartbeat_ttl, repr(time.time()), resync,
            round(1000 * (2 * (self.options.flush_interval or 1.0) + 1)), bye,
        )  # fmt: skip
        return FlushReply.parse(self._script(keys=[self.options.key], args=args.argv(arguments)))

    def _acknowledge(self, batch: Batch) -> None:
        self._history.append(batch)
        self._acked = batch.seq
        self._unacked = None

    def _rebase(self, skipped: list[str]) -> bool:
        """Series removed since our last write of them: they count again from the removal."""
        for sid in skipped:
            found = self._series.get(sid)
            if found is not None and isinstance(found[1], RedisNativeHistogram):
                found[1].rebase()
        return bool(skipped)

    def _recover(self, last: int) -> bool:
        """Redis has our batches only up to ``last``: send the missing ones again.

        True if Redis skipped removed series in the batch in flight (see ``_rebase``).
        """
        missing = [b for b in self._history if b.seq > last]
        contiguous = bool(missing) and missing[0].seq == last + 1
        if last >= 0 and contiguous:
            logger.warning(
                "pytheus: Redis at %s lost %d recent batch(es); sending them again",
                self.options.address,
                len(missing),
            )
            expected = last
            for batch in missing:
                self._send(batch.seq, expected, batch.arguments())
                expected = batch.seq
            if self._unacked is not None:
                batch = self._unacked
                _, _, skipped = self._send(batch.seq, expected, batch.arguments())
                self._acknowledge(batch)
                return self._rebase(skipped)
            return False
        logger.warning(
            "pytheus: Redis at %s lost this process's metrics (it restarted empty); "
            "re-sending its totals",
            self.options.address,
        )
        if self.on_lost is not None:
            self.on_lost()
        with self._series_lock:
            series = list(self._series.items())
        entries = tuple(
            (sid, meta, tuple(ops)) for sid, (meta, value) in series if (ops := value.totals())
        )
        self._seq += 1
        batch = Batch(self._seq, entries)
        self._send(batch.seq, last, batch.arguments(), resync=True)
        self._history.clear()
        self._acknowledge(batch)
        return False

    def _failed(self, error: Exception) -> None:
        self.healthy = False
        now = time.monotonic()
        if now - self._last_error_log > 30:
            self._last_error_log = now
            logger.warning(
                "pytheus: cannot write metrics to Redis at %s (%s); keeping them and retrying",
                self.options.address,
                error,
            )
        with self._series_lock:
            pending = len(self._series)
        if pending > self.options.max_pending_series:
            self._drop_pending()

    def _drop_pending(self) -> None:
        """Past the cap, forget what waits for Redis rather than grow without bound (counted).

        The batch in flight may or may not have reached Redis; its number is remembered so
        that the next reply settles it either way, and nothing is counted twice.
        """
        dropped = 0
        batch, self._unacked = self._unacked, None
        if batch is not None:
            self._uncertain = batch.seq
            dropped += len(batch.entries)
        with self._series_lock:
            series = list(self._series.values())
        dropped += sum(1 for _, value in series if value.take())
        self.dropped_updates += dropped
        logger.error(
            "pytheus: Redis at %s unreachable with more than %d series pending: dropped the "
            "pending updates of %d series (%d dropped so far)",
            self.options.address,
            self.options.max_pending_series,
            dropped,
            self.dropped_updates,
        )

    def _refused(self, error: Exception) -> None:
        self.healthy = False
        batch, self._unacked = self._unacked, None
        if batch is not None:
            self._seq = self._acked  # the refused number was never applied
            self.dropped_updates += len(batch.entries)
        now = time.monotonic()
        if batch is not None or now - self._last_error_log > 30:
            self._last_error_log = now
            logger.error(
                "pytheus: Redis at %s refused metrics (%s); dropped %d series updates (%d so far)",
                self.options.address,
                error,
                len(batch.entries) if batch else 0,
                self.dropped_updates,
            )


def _is_refusal(error: Exception) -> bool:
    """An error reply from Redis (a script error, ACL, out of memory), not a network fault."""
    import redis

    return isinstance(error, redis.ResponseError)
