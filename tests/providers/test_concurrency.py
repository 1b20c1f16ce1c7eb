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


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


@pytest.mark.parametrize("flavour", ["openai", "anthropic"])
@pytest.mark.parametrize("limit", [1, 4])
def test_in_flight_requests_never_exceed_the_limit(flavour: str, limit: int) -> None:
    with SERVER_FOR[flavour](delay=0.05) as server:
        p = build_provider(
            {"provider": flavour, "model": "fake-model", "base_url": server.sdk_base_url, "concurrency": limit}
        )

        async def batch() -> list:
            messages = [{"role": "user", "content": "Propose one."}]
            return await asyncio.gather(*(p.structured(messages, Method) for _ in range(12)))

        results = asyncio.run(batch())
    assert all(r.ok for r in results)
    assert server.requests == 12
    assert server.max_in_flight == limit


def test_retries_wait_outside_the_limit() -> None:
    """A call sleeping in backoff holds no slot: others proceed meanwhile."""
    with SERVER_FOR["openai"](["429:1"], delay=0.02) as server:
        p = build_provider(
            {
                "provider": "openai",
                "model": "fake-model",
                "base_url": server.sdk_base_url,
                "concurrency": 1,
                "backoff_initial_s": 0.01,
            }
        )

        async def batch() -> list:
            messages = [{"role": "user", "content": "Propose one."}]
            first = asyncio.create_task(p.structured(messages, Method))
            await asyncio.sleep(0.05)  # the first call is now sleeping on Retry-After: 1
            others = await asyncio.wait_for(
                asyncio.gather(*(p.structured(messages, Method) for _ in range(5))), timeout=0.9
            )
            return [await first, *others]

        results = asyncio.run(batch())
    assert all(r.ok for r in results)
    assert results[0].cost.calls == 2
    assert server.max_in_flight == 1
