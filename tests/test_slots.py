"""Slots: taken atomically, refused when full, given back into the window that counted them."""

import threading
import time
import uuid

import limits
import pytest
import redis
from conftest import PASSWORD, redis_server, settings

from authsvc import create_app
from authsvc.slots import Slots

OPTIONS = {"socket_timeout": 1, "socket_connect_timeout": 1}


@pytest.fixture(params=["memory", "redis"])
def slots(request):
    """Return slots in memory, and in Redis."""
    uri = "memory://" if request.param == "memory" else redis_server()
    return Slots(uri, OPTIONS)


def identifiers():
    """Return the identifiers of a limit key no other test uses."""
    return ("test", uuid.uuid4().hex, "scope")


def test_a_limit_admits_its_count_and_no_more(slots):
    """Three slots of "3 per minute" are taken; the fourth is refused."""
    item, key = limits.parse("3 per minute"), identifiers()
    assert [slots.take(item, *key) is not None for _ in range(4)] == [True] * 3 + [False]


def test_a_slot_given_back_frees_room_for_one(slots):
    """Giving one slot back admits exactly one more."""
    item, key = limits.parse("2 per minute"), identifiers()
    first, _ = slots.take(item, *key), slots.take(item, *key)
    slots.give_back(first)
    assert slots.take(item, *key) is not None
    assert slots.take(item, *key) is None


def test_threads_at_once_take_no_more_than_the_count(slots):
    """Forty threads released together: exactly five slots of "5 per minute" are taken."""
    item, key, barrier, taken = (
        limits.parse("5 per minute"),
        identifiers(),
        threading.Barrier(40),
        [],
    )

    def take():
        """Wait for the others, then take a slot."""
        barrier.wait(timeout=10)
        taken.append(slots.take(item, *key))

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(slot is not None for slot in taken) == 5


def test_a_burst_across_a_window_turn_gets_no_more_than_the_count(slots, monkeypatch):
    """Three slots of "3 per minute" just before its window turns leave none just after.

    limits rounds the previous window's weighted count down (2.99 to 2),
    which let a fourth attempt through a hundredth of a second after three.
    """
    item, key = limits.parse("3 per minute"), identifiers()
    in_memory = slots.storage is slots.memory
    turn = (time.time() // 60 + 1) * 60  # memory's windows turn on the clock's minutes
    if in_memory:
        monkeypatch.setattr(time, "time", lambda: turn - 0.01)
    assert [slots.take(item, *key) is not None for _ in range(3)] == [True] * 3
    if in_memory:
        monkeypatch.setattr(time, "time", lambda: turn + 0.01)
    else:  # Redis's window turns a minute after its first take: make that 10 ms ago
        current = slots.storage.prefixed_key(slots.storage._current_window_key(item.key_for(*key)))
        redis.Redis.from_url(redis_server()).pexpire(current, 59_990)
    assert slots.take(item, *key) is None


def test_a_redis_slot_goes_back_to_the_previous_window_after_a_shift():
    """A window that ended and was shifted holds its slot in the previous counter: it drops."""
    slots, item, key = Slots(redis_server(), OPTIONS), limits.parse("5 per minute"), identifiers()
    slot = slots.take(item, *key)
    connection = redis.Redis.from_url(redis_server())
    previous, current = (
        slots.storage.prefixed_key(name)
        for name in (
            slots.storage._previous_window_key(slot.key),
            slots.storage._current_window_key(slot.key),
        )
    )
    connection.pexpire(current, 30_000)  # as if the window had ended 30 s ago
    assert slots.take(item, *key) is not None  # shifts: the first slot is now in `previous`
    ended = slot._replace(window=int(time.time() * 1000) - 30_000)
    slots.give_back(ended)
    assert (int(connection.get(previous)), int(connection.get(current))) == (0, 1)


def test_without_redis_slots_are_taken_in_memory():
    """With Redis unreachable, a limit still admits its count and no more, in this process."""
    slots, item, key = (
        Slots("redis://127.0.0.1:9", OPTIONS),
        limits.parse("2 per minute"),
        identifiers(),
    )
    assert [slots.take(item, *key) is not None for _ in range(3)] == [True, True, False]
    assert slots.current() is slots.memory


def test_a_refusal_by_one_limit_gives_back_the_others_slots(database_url, auth):
    """429s for one account hold no slots of the address: another account's failure is checked."""
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_SIGNIN_PER_EMAIL": "2 per minute"}
    client = create_app(
        settings(database_url, RATELIMIT_SIGNIN_PER_ADDRESS="3 per minute", **config)
    ).test_client()

    def signin(email):
        """Try a wrong password for an account."""
        return client.post(
            "/auth/signin", json={"email": email, "password": "x" + PASSWORD}
        ).status_code

    assert [signin("a@example.com") for _ in range(5)] == [401, 401, 429, 429, 429]
    assert [signin("b@example.com"), signin("c@example.com")] == [401, 429]


def test_counting_in_memory_starts_no_thread(monkeypatch):
    """limits' MemoryStorage started a Timer thread for most writes; slots' own starts none."""
    slots, item, started = Slots("memory://", OPTIONS), limits.parse("100 per minute"), []
    monkeypatch.setattr(threading.Timer, "start", lambda timer: started.append(timer))
    for _ in range(5):
        assert slots.take(item, *identifiers()) is not None
        time.sleep(0.015)  # longer than the 10 ms after which limits' timer had run
    assert started == []


def test_expired_counters_are_swept_from_memory(monkeypatch):
    """A counter whose windows have passed is dropped by a later write, a second or more on."""
    slots, item = Slots("memory://", OPTIONS), limits.parse("3 per second")
    slots.take(item, *identifiers())
    counters = set(slots.memory.storage)
    later = time.time() + 5
    monkeypatch.setattr(time, "time", lambda: later)
    slots.memory.swept -= 1
    slots.take(item, *identifiers())
    assert counters and not counters & set(slots.memory.storage)
