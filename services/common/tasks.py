"""Background tasks that stop cleanly."""

import asyncio


async def finish(task: asyncio.Task | None, grace_s: float = 0.0) -> None:
    """Let a task that was asked to stop finish its current unit of work for up to grace_s,
    then cancel it; return once it is done either way."""
    if task is None:
        return
    if grace_s > 0:
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            task.cancel()
    else:
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def is_running(task: asyncio.Task | None) -> bool:
    return task is not None and not task.done()
