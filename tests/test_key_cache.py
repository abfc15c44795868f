"""Each worker's cache of client keys (keys.Access): a key in use costs one store read per
worker per ``CACHE_SECONDS``, however many of its requests arrive together, and a change this
worker made is never hidden by a read that began before it."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from trio_router.keys import Access, NewKey, new_key
from trio_router.store import ClientKey
from trio_router.store.sqlite import SQLiteStore


class SlowStore(SQLiteStore):
    """Counts ``key_by_hash`` reads and holds each until ``release`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0
        self.release = trio.Event()

    async def key_by_hash(self, secret_hash: str) -> ClientKey | None:
        self.reads += 1
        await self.release.wait()
        return await super().key_by_hash(secret_hash)


async def test_requests_arriving_together_share_one_store_read(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "usage.sqlite3")
    key, secret = new_key(NewKey(name="shared"))
    await store.create_key(key)
    access = Access(store)
    found: list[ClientKey | None] = []

    async def lookup() -> None:
        found.append(await access.lookup(secret.encode()))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(lookup)
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    assert store.reads == 1
    assert len(found) == 50 and all(k is not None and k.id == key.id for k in found)


async def test_a_read_begun_before_forget_is_not_cached(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "usage.sqlite3")
    key, secret = new_key(NewKey(name="changing"))
    await store.create_key(key)
    access = Access(store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(access.lookup, secret.encode())
        await trio.testing.wait_all_tasks_blocked()
        access.forget()  # e.g. this worker revoked the key meanwhile
        store.release.set()
    await access.lookup(secret.encode())
    assert store.reads == 2  # the stale answer was not kept


async def test_a_failed_read_leaves_the_next_request_to_read_again(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "usage.sqlite3")
    key, secret = new_key(NewKey(name="flaky"))
    await store.create_key(key)
    access = Access(store)
    store.release.set()
    with trio.move_on_after(0) as scope:  # the first reader is cancelled (its client left)
        await access.lookup(secret.encode())
    assert scope.cancelled_caught
    found = await access.lookup(secret.encode())
    assert found is not None and found.id == key.id
