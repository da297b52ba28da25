"""Admission: how many requests answer at once, how many wait, each key's share, and the cancelling of a
generation whose client has gone. Generation is blocking, so it runs in worker threads, as many at once as
the generator has slots (llama-server's --parallel)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from expertkit.errors import ExpertkitError
from expertkit.serve.api import ApiError, client_or_server


class ClientGone(Exception):
    """The client disconnected: its generation stops at the next token."""


class Admission:
    """``slots`` requests answer at once; ``queue`` more wait. A request gets 429 at once, with a
    Retry-After estimated from the recent time per request, when the queue is full or when its key
    already holds ``per_key`` places (answering or waiting), so one key's burst cannot take every slot
    and the whole queue. Free slots go to the waiting keys in turn (round robin), not first come, first
    served: another key waits behind at most one request per key, not behind a whole burst."""

    def __init__(self, slots: int, queue: int, per_key: int = 0) -> None:
        self.slots = max(1, slots)
        self.capacity = self.slots + queue
        self.per_key = per_key or max(self.slots, self.capacity // 2)
        self.admitted = 0  # answering or waiting
        self.held: dict[str, int] = {}  # the same, per key
        self.running = 0
        self.waiting: dict[str, deque[asyncio.Future]] = {}  # the keys' turn order is the dict's order
        self.mean_s = 5.0  # moving average of a request's time in a slot

    def enter(self, key: str) -> None:
        held = self.held.get(key, 0)
        if self.admitted >= self.capacity:
            wait = math.ceil(self.mean_s * (self.admitted - self.slots + 1) / self.slots)
            message = (
                f"the server is busy ({self.slots} answering, {self.admitted - self.slots} waiting): retry in {wait} s"
            )
        elif held >= self.per_key:
            wait = math.ceil(self.mean_s * max(1, held - self.slots + 1) / self.slots)
            message = (
                f"your key has {held} requests answering or waiting, as many as one key may "
                f"(serve.per_key = {self.per_key}): retry in {wait} s"
            )
        else:
            self.admitted += 1
            self.held[key] = held + 1
            return
        raise ApiError(
            429, message, "rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(max(1, wait))}
        )

    def leave(self, key: str) -> None:
        self.admitted -= 1
        self.held[key] -= 1
        if not self.held[key]:
            del self.held[key]

    async def acquire(self, key: str) -> None:
        """Return once this request holds a slot (call ``release`` after); cancelling gives its turn up."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, deque()).append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # the slot came as the waiter left: the next one takes it
            else:
                line = self.waiting.get(key)
                if line is not None and turn in line:
                    line.remove(turn)
                    if not line:
                        del self.waiting[key]
            raise

    def release(self) -> None:
        """A slot is free: the key first in turn takes it, and goes to the back of the line."""
        self.running -= 1
        while self.waiting and self.running < self.slots:
            key = next(iter(self.waiting))
            line = self.waiting.pop(key)
            turn = line.popleft()
            if line:
                self.waiting[key] = line
            if not turn.done():
                turn.set_result(None)
                self.running += 1

    def record(self, seconds: float) -> None:
        self.mean_s = 0.8 * self.mean_s + 0.2 * seconds


class EventStream(StreamingResponse):
    """An event stream that calls ``on_close`` once it is over, however it ends: finished, failed, or
    the client gone before the first event (then the body generator never runs, nor its finally)."""

    def __init__(self, content, on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def watch(request: Request, future: asyncio.Future, cancel: threading.Event):
    """Await the worker, checking that the client is still there; if it left, cancel the generation."""
    while True:
        done, _ = await asyncio.wait({future}, timeout=0.25)
        if done:
            return future.result()
        if await request.is_disconnected():
            cancel.set()
            future.add_done_callback(quietly)  # its ClientGone is expected, not news
            raise ClientGone


def until(cancel: threading.Event, push: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """A generator's on_token that stops it (ClientGone) once ``cancel`` is set, else passes each piece on."""

    def on_token(piece: str) -> None:
        if cancel.is_set():
            raise ClientGone
        if push is not None:
            push(piece)

    return on_token


def quietly(future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it


class Slots:
    """The worker threads behind an Admission: ``work`` runs in one once it is the key's turn."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.pool = ThreadPoolExecutor(max_workers=admission.slots + 2, thread_name_prefix="expertkit-answer")

    async def admitted(self, request: Request, work: Callable[[], Any], key: str) -> asyncio.Future:
        """``work`` running in a slot once it is this key's turn (a future); a client that leaves while
        waiting raises ClientGone."""
        admission = self.admission
        loop = asyncio.get_running_loop()
        acquire = asyncio.ensure_future(admission.acquire(key))
        try:
            while not acquire.done():
                await asyncio.wait({acquire}, timeout=0.25)
                if not acquire.done() and await request.is_disconnected():
                    raise ClientGone
        except BaseException:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                admission.release()  # it had its slot already
            acquire.cancel()  # else it gives its turn up
            raise
        started = time.perf_counter()

        def run():
            try:
                return work()
            finally:
                loop.call_soon_threadsafe(admission.release)
                admission.record(time.perf_counter() - started)

        return loop.run_in_executor(self.pool, run)

    async def answered(self, request: Request, work: Callable[[], Any], cancel: threading.Event, key: str):
        """Not streamed: admitted, answered in a slot, the client watched (ClientGone when it left); a
        failure becomes the client's 400 or the server's 502."""
        self.admission.enter(key)
        try:
            return await watch(request, await self.admitted(request, work, key), cancel)
        except ExpertkitError as exc:
            raise client_or_server(exc) from None
        finally:
            self.admission.leave(key)
