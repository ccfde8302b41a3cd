"""Slots of rate limits: taken atomically before an attempt is checked, given back after.

A limit of N per window admits an attempt only by taking one of its N slots,
and taking is one atomic step in the storage (a Lua script in Redis, a lock
in memory): however many requests arrive at once, on however many workers
and instances, at most N hold a slot. A limit that counts only failures
gives the slot of a success back. Counters are limits' sliding-window ones
(two windows, the previous weighted by how much of it is still in view), in
the same keys, so limits' own reads (the time until a slot frees) agree.
The weighted count is not rounded down as limits does: N attempts just
before a window turns still count as nearly N just after, so a burst across
the turn gets no more than N through (limits would let one more pass).

Giving back is exact: a slot names the window it was counted in (memory:
its absolute key; Redis: when that window ends, by Redis's clock), and one
atomic step takes it out of that window, whichever of the two it is now.

While Redis is unreachable, slots are taken in this process's memory and
Redis is tried again after a pause that doubles up to a minute.
"""

import logging
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

log = logging.getLogger(__name__)

LONGEST_PAUSE = 60

# limits' acquire_sliding_window.lua, answering when the current window ends
# (milliseconds, Redis's clock) instead of true, and false when it is full;
# and without its rounding down of the previous window's weighted count,
# which let one more attempt through just after a window turned.
TAKE = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end
local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = math.max(tonumber(redis.call('pttl', KEYS[1])), 0)
local current_count = tonumber(redis.call('get', KEYS[2])) or 0
if previous_count * previous_ttl / expiry + current_count + 1 > limit then
    return false
end
if redis.call('exists', KEYS[2]) == 1 then
    redis.call('incr', KEYS[2])
else
    redis.call('set', KEYS[2], 1, 'PX', expiry * 2)
end
local now = redis.call('time')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return now_ms + tonumber(redis.call('pttl', KEYS[2])) - expiry
"""

# Take one slot out of the window that ends at ARGV[1]: the current one
# until then, for one more window the previous one (still under the current
# key until a take shifts it: a shifted current key outlives the window).
GIVE_BACK = """
local window_end = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local now = redis.call('time')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if now_ms >= window_end + expiry then
    return 0
end
local key = KEYS[2]
if now_ms >= window_end and tonumber(redis.call('pttl', KEYS[2])) > expiry then
    key = KEYS[1]
end
if (tonumber(redis.call('get', key)) or 0) > 0 then
    redis.call('decr', key)
    return 1
end
return 0
"""


class SweptMemoryStorage(MemoryStorage):
    """limits' MemoryStorage, its expired counters swept as it is written, at most once a second.

    limits' own starts a threading.Timer to sweep them 10 ms after a write
    whenever the last one has run: a worker counting requests a few
    milliseconds apart started a thread for most of them. Reads never need
    the sweep (an expired counter reads as 0 and is dropped), and a slot is
    always read before its counter is written.
    """

    def __init__(self):
        super().__init__()
        self.timer.cancel()
        self.swept = time.monotonic()

    def _MemoryStorage__schedule_expiry(self):
        """Sweep the expired counters if the last sweep was a second ago or more."""
        if time.monotonic() - self.swept >= 1:
            self.swept = time.monotonic()
            self._MemoryStorage__expire_events()


class Slot(NamedTuple):
    """One slot held in a storage: its window (None: unknown, so it is never given back)."""

    storage: Any
    key: str
    expiry: int
    window: Any


class Slots:
    """The slots of one app's limits, in its storage, or in memory while that is unreachable."""

    def __init__(self, uri, options):
        """Open the storage a RATELIMIT_STORAGE_URI names (connecting only when first used)."""
        self.memory = SweptMemoryStorage()
        in_memory = urlsplit(uri).scheme == "memory"
        self.storage = self.memory if in_memory else storage_from_string(uri, **options)
        self.errors = (StorageError, *_as_tuple(self.storage.base_exceptions))
        self.lock, self.down_until, self.pause = threading.Lock(), 0.0, 0
        if isinstance(self.storage, RedisStorage):
            connection = self.storage.get_connection()
            self.scripts = connection.register_script(TAKE), connection.register_script(GIVE_BACK)

    def current(self):
        """Return the storage to use now: the configured one, unless it failed a moment ago."""
        if self.storage is self.memory or time.monotonic() >= self.down_until:
            return self.storage
        return self.memory

    def _failed(self, error):
        """Count in memory for a while: the storage failed."""
        with self.lock:
            self.pause = min(max(1, self.pause * 2), LONGEST_PAUSE)
            self.down_until = time.monotonic() + self.pause
        log.error(
            "rate-limit storage unreachable (%s): counting in memory for %d s",
            type(error).__name__,
            self.pause,
        )

    def _recovered(self):
        """Note that the storage answers again."""
        if self.pause:
            with self.lock:
                self.pause = 0
            log.warning("rate-limit storage answers again")

    def use(self, operation):
        """Run operation(storage) on the current storage; on its failure, on memory instead."""
        storage = self.current()
        if storage is self.memory:
            return operation(storage)
        try:
            result = operation(storage)
        except self.errors as error:
            self._failed(error)
            return operation(self.memory)
        self._recovered()
        return result

    def take(self, item, *identifiers):
        """Take a slot of a limit item for these identifiers; return it, or None if it is full."""
        key, expiry = item.key_for(*identifiers), item.get_expiry()
        return self.use(lambda storage: self._take(storage, key, item.amount, expiry))

    def _take(self, storage, key, amount, expiry):
        """Take a slot in one storage."""
        if storage is not self.memory:
            previous, current = _redis_keys(storage, key)
            window_end = self.scripts[0](keys=[previous, current], args=[amount, expiry])
            return None if window_end is None else Slot(storage, key, expiry, window_end)
        now = time.time()
        previous, window = storage.sliding_window_keys(key, expiry, now)
        info = storage._get_sliding_window_info(previous, window, expiry, now)
        weighted = info[0] * info[1] / expiry
        if weighted + info[2] + 1 > amount:
            return None
        # Counted, then checked again: of threads taking the last slot at once, one keeps it.
        if weighted + storage.incr(window, 2 * expiry) > amount:
            storage.decr(window)
            return None
        if window != storage.sliding_window_keys(key, expiry, time.time())[1]:
            window = None  # taken as a window ended: which one counts it is unknown
        return Slot(storage, key, expiry, window)

    def give_back(self, slot):
        """Give a slot back to the window that counted it; a failure leaves it counted."""
        if slot.window is None:
            return
        try:
            if slot.storage is self.memory:
                if slot.storage.get(slot.window) > 0:
                    slot.storage.decr(slot.window)
                return
            previous, current = _redis_keys(slot.storage, slot.key)
            self.scripts[1](keys=[previous, current], args=[slot.window, slot.expiry])
        except self.errors as error:
            log.error("rate-limit slot not given back (%s)", type(error).__name__)

    def seconds_until_free(self, item, *identifiers):
        """Return the whole seconds until a slot of a full limit item frees (at least 1)."""

        def reset_time(storage):
            """Ask the storage when the limit's next slot frees."""
            return SlidingWindowCounterRateLimiter(storage).get_window_stats(item, *identifiers)[0]

        return max(1, int(self.use(reset_time) - time.time()) + 1)

    def first_mark(self, marker, expiry):
        """Set a marker that lives `expiry` seconds; tell whether this call set it first."""
        return self.use(
            lambda storage: not storage.get(marker) and storage.incr(marker, expiry) == 1
        )


def _as_tuple(exceptions):
    """Return an exception class, or a tuple of them, as a tuple."""
    return exceptions if isinstance(exceptions, tuple) else (exceptions,)


def _redis_keys(storage, key):
    """Return the Redis keys of a sliding window's previous and current counters (limits' names)."""
    return (
        storage.prefixed_key(storage._previous_window_key(key)),
        storage.prefixed_key(storage._current_window_key(key)),
    )
