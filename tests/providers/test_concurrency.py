"""The concurrency limit holds: the server never sees more requests in flight than the
provider allows, and it does see that many (the limit is reached, not just respected)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from ouro.agents.providers import build_provider
from tests.providers.fake_servers import SERVER_FOR


class Method(BaseModel):
    family: str
    alpha: float


pytestmark = pytest.mark.usefixtures("api_keys")  # every test here talks to a loopback server


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize("limit", [1, 4])
def test_in_flight_requests_never_exceed_the_limit(flavour: str, limit: int) -> None:
    with SERVER_FOR[flavour](delay=0.03) as server:
        p = build_provider(
            {"provider": flavour, "model": "fake-model", "base_url": server.sdk_base_url, "concurrency": limit}
        )

        async def batch() -> list:
            messages = [{"role": "user", "content": "Propose one."}]
            async with p:
                return await asyncio.gather(*(p.structured(messages, Method) for _ in range(8)))

        results = asyncio.run(batch())
    assert all(r.ok for r in results)
    assert server.requests == 8
    assert server.max_in_flight == limit


def test_retries_wait_outside_the_limit() -> None:
    """A call sleeping on Retry-After holds no slot: with a limit of 1, other calls
    started after its 429 all finish before it does."""
    with SERVER_FOR["openai"](["429:1"]) as server:
        p = build_provider(
            {"provider": "openai", "model": "fake-model", "base_url": server.sdk_base_url, "concurrency": 1}
        )
        finished: list[str] = []

        async def call(name: str) -> bool:
            result = await p.structured([{"role": "user", "content": "Propose one."}], Method)
            finished.append(name)
            return result.ok

        async def batch() -> list[bool]:
            first = asyncio.create_task(call("first"))
            while server.requests == 0:  # wait until the 429 is on its way back
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            others = [asyncio.create_task(call(f"other{i}")) for i in range(5)]
            async with p:
                return await asyncio.gather(first, *others)

        results = asyncio.run(batch())
    assert all(results)
    assert finished[-1] == "first" and len(finished) == 6
    assert server.max_in_flight == 1
