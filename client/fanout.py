"""Many calls of one kind, ``concurrency`` at a time, on threads (the blocking client) or asyncio tasks (the
asyncio client); each call's result, or the error it failed with for its own item, is handed to ``settle``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

from .errors import ExplainerError

# What one item's call may fail with and still leave the others going: the failure is settled as its outcome.
INSTANCE_ERRORS = (ExplainerError, ValueError)

Item = TypeVar("Item")


def on_threads(items: Iterable[Item], call: Callable[..., Any], arguments: Callable[[Item], Mapping[str, Any]],
               settle: Callable[[Item, Any], None], concurrency: int) -> None:
    """``call(**arguments(item))`` for every item on ``concurrency`` threads, each outcome settled."""
    def one(item: Item) -> None:
        try:
            outcome = call(**arguments(item))
        except INSTANCE_ERRORS as err:
            outcome = err
        settle(item, outcome)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, items))


async def on_tasks(items: Iterable[Item], call: Callable[..., Awaitable[Any]],
                   arguments: Callable[[Item], Mapping[str, Any]], settle: Callable[[Item, Any], None],
                   concurrency: int) -> None:
    """``await call(**arguments(item))`` for every item, in tasks of which ``concurrency`` run at once."""
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(item: Item) -> None:
        async with slots:
            try:
                outcome = await call(**arguments(item))
            except INSTANCE_ERRORS as err:
                outcome = err
        settle(item, outcome)

    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
