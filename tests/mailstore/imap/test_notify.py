"""The mailbox change notifier: subscriptions, the hop from other threads, other nodes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mailstore.notify import Notifier


async def test_subscribe_dispatch_cancel_and_thread_hop() -> None:
    notifier = Notifier()
    await notifier.start()
    seen: list[tuple[str, int]] = []
    a = notifier.subscribe(1, lambda m: seen.append(("a", m)))
    notifier.subscribe(2, lambda m: seen.append(("b", m)))
    notifier.mailbox_changed(1)
    notifier.mailbox_changed(3)
    assert seen == [("a", 1)]
    a.cancel()
    a.cancel()  # twice is harmless
    assert notifier.subscribers(1) == 0
    done = asyncio.Event()
    notifier.subscribe(2, lambda m: done.set())
    threading.Thread(target=notifier.mailbox_changed, args=(2,)).start()  # e.g. write_sync
    await asyncio.wait_for(done.wait(), 2)
    assert ("b", 2) in seen
    await notifier.close()


@pytest.mark.allow_crash
async def test_a_failing_subscriber_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier()
    await notifier.start()
    seen: list[int] = []

    def broken(mailbox_id: int) -> None:
        raise RuntimeError("boom")

    notifier.subscribe(1, broken)
    notifier.subscribe(1, seen.append)
    with caplog.at_level("ERROR"):
        notifier.mailbox_changed(1)
    assert seen == [1]
    assert "subscriber failed" in caplog.text
    await notifier.close()
