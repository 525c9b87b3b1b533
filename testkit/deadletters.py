"""Reading the dead-letter topic in tests, as plain JSON (no service code), and checking that a
dead letter carries no personal value in clear."""

import asyncio
import base64

import orjson

from testkit.infra import WAIT_S, TopicReader


async def dead_letters(bootstrap: str, prefix: str, count: int, timeout: float = WAIT_S,
                       settle_s: float = 1.0) -> list[dict]:
    """The dead letters (type dead-letter) on the topic once `count` have arrived and nothing
    more came within `settle_s`."""
    reader = TopicReader(bootstrap, f"{prefix}dead-letters.v1")
    await reader.start()  # waits for the topic: the consuming service creates it at start
    try:
        def letters(messages: list) -> list[dict]:
            decoded = [orjson.loads(m.value) for m in messages]
            return [d for d in decoded if d["type"] == "dead-letter"]

        await reader.wait_for(lambda m: len(letters(m)) >= count, timeout)
        await asyncio.sleep(settle_s)
        return letters(await reader.drain())
    finally:
        await reader.stop()


def assert_no_clear_values(letter: dict, values: list[str]) -> None:
    """Nothing in the dead letter but its payload (the original bytes) may hold these values."""
    clear = orjson.dumps({k: v for k, v in letter.items() if k != "payload"}).decode()
    for value in values:
        assert value not in clear, f"a personal value is in the dead letter: {clear}"


def payload(letter: dict) -> bytes | None:
    return None if letter.get("payload") is None else base64.b64decode(letter["payload"])
