"""The one model-provider interface, and the one retry loop every provider shares.

A provider turns chat messages into a validated pydantic object (``structured``) or
into text (``chat``). Subclasses only know how to make one HTTP call (``_call``) and
how to sort its exceptions (``classify``); everything that decides whether an
experiment survives a flaky API lives here, once:

* rate limits, 5xx, timeouts and dropped connections are retried with exponential
  backoff and jitter (tenacity), honouring ``Retry-After`` on rate limits;
* bad keys, unknown models and bad requests fail at once, with one attempt;
* output that is not JSON or breaks the schema is asked again with the validation
  error, then recorded as invalid;
* every attempt is counted in the returned :class:`~ouro.types.Cost`, so a verifier's
  information ledger shows what retries really spent;
* a call never raises for an API failure: it returns a :class:`CallResult` whose
  ``error`` says why. A judge that failed is *unscored*, never a reject, and the
  caller can only tell the difference if failures come back as values;
* inside a call-journal scope (``ouro.journal``: the cohort opens one for each seed's
  model work), a call's outcome is saved as soon as it ends, and an answer saved by a
  process that died is returned with its recorded cost instead of being asked again.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import re
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential,
    wait_random,
)

from ouro.journal import FAILED, INVALID, OK, slot_for
from ouro.types import Cost

Message = dict[str, str]
"""``{"role": "system" | "user" | "assistant", "content": str}``"""

Failure = Literal["rate_limit", "transient", "fatal"]
M = TypeVar("M", bound=BaseModel)


class ProviderConfigError(ValueError):
    """A provider cannot work as configured (e.g. its API key is missing).

    Raised at construction, before any request, so a sweep fails in its first second
    rather than after an hour of unscored verdicts.
    """


class MalformedResponse(Exception):
    """The server answered 2xx with something that is not a model reply (no choices,
    no content blocks). Treated as transient: a proxy hiccup, worth another attempt."""


class Prices(BaseModel):
    """USD per million tokens; with them, a call's cost carries dollars, not only tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1e6


class ProviderConfig(BaseModel):
    """Settings shared by every provider. ``provider`` is the discriminator in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    temperature: float | None = Field(0.7, allow_inf_nan=False)  # NaN is not JSON: refused here, not by the server
    max_tokens: int = Field(1024, gt=0)
    timeout_s: float = Field(60.0, gt=0, description="limit for one HTTP attempt")
    max_attempts: int = Field(5, ge=1, description="HTTP attempts per request, first included")
    max_total_s: float = Field(300.0, gt=0, description="budget for one request and its retries")
    backoff_initial_s: float = Field(1.0, ge=0, description="first backoff wait; doubles after")
    backoff_max_s: float = Field(30.0, ge=0, description="cap on one backoff wait")
    concurrency: int = Field(8, ge=1, description="in-flight HTTP requests per provider")
    validation_retries: int = Field(2, ge=0, description="re-asks after invalid output")
    prices: Prices | None = None

    def build(self) -> "Provider":
        """The provider this config describes; each concrete config names its class."""
        raise NotImplementedError(f"{type(self).__name__} names no provider class")


@dataclass(frozen=True)
class RawReply:
    """What one successful HTTP attempt returned, before any validation."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0


class CallResult(BaseModel):
    """The outcome of one ``structured`` or ``chat`` call, successful or not.

    ``value`` is the validated object (``None`` for ``chat`` and on failure), ``raw``
    the last text the model produced, ``error`` the final reason when it failed for
    good. ``cost`` counts every HTTP attempt, including failed ones: ``calls`` is the
    number of attempts, ``retries`` those after the first (transport retries and
    re-asks after invalid output alike), tokens are summed over all of them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    value: BaseModel | None = None
    error: str | None = None
    cost: Cost = Field(default_factory=Cost)
    raw: str = ""
    model: str = ""
    invalid: bool = False
    """The model answered, but its output never validated (``error`` says why): unlike a
    failed call, the endpoint works."""
    replayed: bool = False
    """Read back from the call journal: paid for by an earlier process, not asked again."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The reply text; the natural name for ``chat`` results."""
        return self.raw


class _Tally:
    """Accumulates what one logical call spent across all its HTTP attempts."""

    def __init__(self) -> None:
        self.calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.started = time.monotonic()

    def add(self, reply: RawReply) -> None:
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out

    def cost(self, prices: Prices | None) -> Cost:
        return Cost(
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            usd=prices.usd(self.tokens_in, self.tokens_out) if prices else 0.0,
            wall_seconds=time.monotonic() - self.started,
            calls=self.calls,
            retries=max(self.calls - 1, 0),
        )


class _Attempts:
    """What one request's attempts have used so far, for the ``max_total_s`` budget and
    the final reason: when it started, how long it waited for a concurrency slot (which
    the budget does not count), and how many attempts it made."""

    __slots__ = ("started", "queued", "count")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.queued = 0.0
        self.count = 0


@dataclass
class _LoopState:
    """Objects bound to one event loop: the concurrency gate and the SDK client.

    An httpx connection pool and an ``asyncio.Semaphore`` belong to the loop that
    first used them; callers may run ``asyncio.run`` several times, so each running
    loop gets its own, made on first use.
    """

    loop: asyncio.AbstractEventLoop
    semaphore: asyncio.Semaphore
    client: Any


class Provider(abc.ABC):
    """A model behind an API. Subclasses implement ``_make_client``, ``_call`` and
    ``classify``; the retry, validation and accounting logic is shared."""

    name: ClassVar[str]
    api_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions of the SDK that mean "the API failed"; others are bugs and propagate."""

    first_attempt_outside_tenacity: ClassVar[bool] = True
    """Make a request's first attempt directly, and hand it to tenacity only if it fails.

    Most requests succeed at once, and a tenacity loop costs more than the attempt's own
    bookkeeping: building the retry strategies, and reference cycles (tenacity's state
    points back at itself) that leave about 40 objects a call for the cyclic garbage
    collector, whose passes then stall the event loop. A failed first attempt is
    replayed into tenacity as its first outcome, so every decision after it (retry or
    not, wait, stop, the budget) is tenacity's, exactly as when tenacity made the
    attempt. ``False`` sends every attempt through tenacity: the reference the tests
    compare this path with."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._loops: dict[int, _LoopState] = {}
        self._current: _LoopState | None = None  # the last loop's state: one check a call

    # ----- what a subclass provides ---------------------------------------------------

    @abc.abstractmethod
    def _make_client(self) -> Any:
        """A fresh client for the running event loop, with SDK retries off: what ``_call``
        sends through (an SDK client, or an :class:`~._http.Endpoint` of one), closed
        with ``await client.close()``."""

    @abc.abstractmethod
    async def _call(self, messages: list[Message], schema: type[BaseModel] | None) -> RawReply:
        """One HTTP attempt. ``schema=None`` asks for plain text."""

    @abc.abstractmethod
    def classify(self, exc: BaseException) -> Failure:
        """Sort an exception raised by ``_call``: retry it, wait on it, or give up."""

    @property
    def request_model(self) -> str:
        """The model name sent with each request (vLLM sends an adapter's name)."""
        return self.config.model

    # ----- public API -----------------------------------------------------------------

    async def structured(self, messages: list[Message], schema: type[M]) -> CallResult:
        """Ask for an instance of ``schema``; re-ask with the validation error when the
        reply does not parse, up to ``validation_retries`` times."""
        slot = slot_for(self.request_model, messages, schema.__name__)  # before any await
        if slot is None:
            return await self._structured(messages, schema)
        saved = slot.saved()
        if saved is not None:
            if saved["outcome"] == INVALID:
                return self._replay(saved, error=saved["error"], invalid=True)
            try:
                return self._replay(saved, value=schema.model_validate_json(_strip_fences(saved["raw"])))
            except ValidationError:
                pass  # cannot happen unless the schema changed: ask again
        return self._journaled(slot, await self._structured(messages, schema))

    async def chat(self, messages: list[Message]) -> CallResult:
        """Plain text. ``result.text`` is the reply; ``result.error`` is set on failure."""
        slot = slot_for(self.request_model, messages, "")
        if slot is None:
            return await self._chat(messages)
        saved = slot.saved()
        if saved is not None:
            return self._replay(saved)
        return self._journaled(slot, await self._chat(messages))

    def _replay(self, saved: dict, **fields: Any) -> CallResult:
        return CallResult(
            cost=Cost(**saved["cost"]), raw=saved["raw"], model=saved["model"] or self.request_model, replayed=True, **fields
        )

    @staticmethod
    def _journaled(slot: Any, result: CallResult) -> CallResult:
        """Save a call's outcome. Attempts at the same call that failed for good earlier (in
        a process that died, or in a generation being redone) are added to its cost: the
        line of an answer carries every attempt it took, the line of a failure only its
        own (the next try adds them all up)."""
        own = result.cost
        earlier = slot.earlier_failures()
        if earlier is not None:
            result.cost = own + earlier
        outcome = OK if result.ok else INVALID if result.invalid else FAILED
        slot.save(outcome, own if outcome == FAILED else result.cost, result.raw, result.error or "", result.model)
        return result

    async def _structured(self, messages: list[Message], schema: type[M]) -> CallResult:
        tally = _Tally()
        convo = list(messages)
        raw = ""
        reason = ""
        for _ in range(self.config.validation_retries + 1):
            reply = await self._request(convo, schema, tally)
            if isinstance(reply, str):
                return self._result(tally, error=reply, raw=raw)
            raw = reply.text
            try:
                value = schema.model_validate_json(_strip_fences(raw))
            except ValidationError as exc:
                reason = _describe_validation(exc)
                convo += [
                    {"role": "assistant", "content": raw},
                    {"role": "user", "content": _reask(reason)},
                ]
                continue
            return self._result(tally, value=value, raw=raw)
        attempts = self.config.validation_retries + 1
        return self._result(tally, error=f"invalid output after {attempts} attempts: {reason}", raw=raw, invalid=True)

    async def _chat(self, messages: list[Message]) -> CallResult:
        tally = _Tally()
        reply = await self._request(list(messages), None, tally)
        if isinstance(reply, str):
            return self._result(tally, error=reply)
        return self._result(tally, raw=reply.text)

    async def aclose(self) -> None:
        """Close the SDK client of the running loop, releasing its keep-alive connections.

        Call it (or use ``async with provider:``) before the loop ends; a client left
        open is dropped when its loop closes, and its sockets wait for the collector.
        """
        state = self._loops.pop(id(asyncio.get_running_loop()), None)
        if state is self._current:
            self._current = None
        if state is not None:
            await state.client.close()

    async def __aenter__(self) -> "Provider":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----- the shared machinery -------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._current
        if state is not None and state.loop is loop:
            return state
        for key in [k for k, s in self._loops.items() if s.loop.is_closed()]:
            del self._loops[key]
        state = self._loops.get(id(loop))
        if state is None or state.loop is not loop:
            state = _LoopState(loop, asyncio.Semaphore(self.config.concurrency), self._make_client())
            self._loops[id(loop)] = state
        self._current = state
        return state

    def _client(self) -> Any:
        return self._state().client

    def _classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, (asyncio.TimeoutError, MalformedResponse)):
            return "transient"
        kind = self.classify(exc)
        # the SDKs call every transport failure a connection error; one that no retry
        # can cure (a URL the client cannot send to, a TLS handshake that cannot succeed)
        # is fatal, whatever the SDK's class says
        return "fatal" if kind == "transient" and permanent_cause(exc) is not None else kind

    async def _request(
        self, messages: list[Message], schema: type[BaseModel] | None, tally: _Tally
    ) -> RawReply | str:
        """One request with its transport retries: the reply, or the reason it failed.

        The first attempt is made outside tenacity (see ``first_attempt_outside_tenacity``);
        when it fails, :meth:`_retry` takes over with that failure as its first outcome.
        """
        attempts = _Attempts()
        failure: Exception | None = None
        if self.first_attempt_outside_tenacity:
            try:
                return await self._attempt(messages, schema, tally, attempts)
            except Exception as exc:  # whatever it is, tenacity judges it below
                failure = exc
        return await self._retry(messages, schema, tally, attempts, failure)

    async def _attempt(
        self, messages: list[Message], schema: type[BaseModel] | None, tally: _Tally, attempts: _Attempts
    ) -> RawReply:
        """One HTTP attempt: wait for a concurrency slot, call, count it."""
        asked = time.monotonic()
        async with self._state().semaphore:
            attempts.queued += time.monotonic() - asked
            attempts.count += 1
            tally.calls += 1
            reply = await _within(self._call(messages, schema), self.config.timeout_s)
        tally.add(reply)
        return reply

    async def _retry(
        self,
        messages: list[Message],
        schema: type[BaseModel] | None,
        tally: _Tally,
        attempts: _Attempts,
        failure: Exception | None,
    ) -> RawReply | str:
        """The attempts tenacity drives: retry, wait, or stop, by the rules of this module.

        ``failure``, when given, is the outcome of an attempt already made; tenacity
        receives it as its first attempt's, and makes only the attempts after it.

        The ``max_total_s`` budget counts time spent on attempts and backoff, not time
        queued for a concurrency slot: the last call of a big batch must still get its
        retries. A wait that would overrun the budget stops the retries before sleeping.
        """
        cfg = self.config
        overrun = ""  # why the budget stopped the retries, when it did

        def out_of_budget(rs: RetryCallState) -> bool:
            nonlocal overrun
            spent = (rs.outcome_timestamp or time.monotonic()) - attempts.started - attempts.queued
            if spent + rs.upcoming_sleep < cfg.max_total_s:
                return False
            overrun = (
                f"a further wait of {rs.upcoming_sleep:.1f}s after {spent:.1f}s "
                f"would pass the {cfg.max_total_s:g}s budget"
            )
            return True

        retrying = AsyncRetrying(
            stop=stop_after_attempt(cfg.max_attempts) | stop_any(out_of_budget),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if failure is not None:
                        replayed, failure = failure, None
                        raise replayed
                    return await self._attempt(messages, schema, tally, attempts)
        except Exception as exc:
            if not self._is_api_error(exc):
                raise  # a bug in our code must not pass for an unscored verdict
            return self._give_up(exc, attempts.count, overrun)
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    def _retryable(self, exc: BaseException) -> bool:
        """Worth another attempt: an exception not classified fatal. A cancellation (or an
        interrupt) is a ``BaseException``, never retried: it must reach the caller, even
        from a provider that calls every unknown exception transient."""
        return isinstance(exc, Exception) and self._classify(exc) != "fatal"

    def _is_api_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (asyncio.TimeoutError, MalformedResponse, *self.api_errors))

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when a rate limit names one, else exponential backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and self._classify(exc) == "rate_limit":
            after = retry_after_seconds(exc)
            if after is not None:
                return after
        cfg = self.config
        backoff = wait_exponential(multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s)
        return backoff(state) + wait_random(0, cfg.backoff_initial_s)(state)

    def _give_up(self, exc: BaseException, attempts: int, overrun: str) -> str:
        """The final reason, worded for a verdict log: what failed, and why we stopped."""
        kind = self._classify(exc)
        what = describe_exception(exc)
        if kind == "fatal":
            return f"fatal error, not retried: {what}"
        label = "rate limited" if kind == "rate_limit" else f"transient error ({what})"
        reason = f"{label}: giving up after {attempts} attempts"
        return f"{reason}: {overrun}" if overrun and attempts < self.config.max_attempts else reason

    def _result(self, tally: _Tally, **fields: Any) -> CallResult:
        return CallResult(cost=tally.cost(self.config.prices), model=self.request_model, **fields)


# ----- helpers shared by the SDK-backed providers ------------------------------------


async def _within(call: Awaitable[RawReply], seconds: float) -> RawReply:
    """``await call``, cancelled after ``seconds`` with ``TimeoutError``.

    ``asyncio.timeout`` (Python 3.11+) cancels the waiting task itself; ``wait_for``
    before 3.12 wraps the call in a task of its own, one more task to create and
    schedule on every attempt.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)  # pragma: no cover (Python 3.10)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested wait, from ``retry-after-ms`` or ``retry-after`` (seconds)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


def classify_status(status: int | None) -> Failure:
    """HTTP status to failure kind: 429 waits, 408/409 and 5xx retry, other 4xx are fatal."""
    if status == 429:
        return "rate_limit"
    if status is not None and (status >= 500 or status in (408, 409)):
        return "transient"
    return "fatal"


def describe_exception(exc: BaseException) -> str:
    """``HTTP 500 InternalServerError: ...``; for a connection error, its first cause too.
    Always one line.

    The SDKs word every transport failure alike ("Connection error.", and the openai SDK's
    aiohttp transport reports a dropped connection as "Request timed out."); the
    exception they raise it from says what happened (``ServerDisconnectedError: Server
    disconnected``). A validation error under a :class:`MalformedResponse` is left out:
    the exception quotes the body, and pydantic's report adds several lines, not news.
    """
    status = getattr(exc, "status_code", None)
    message = _message(exc)
    if isinstance(exc, asyncio.TimeoutError):
        message = "timed out"
    text = f"HTTP {status} {type(exc).__name__}: {message}" if status else f"{type(exc).__name__}: {message}"
    root = _root_cause(exc)
    if status is None and root is not exc and not isinstance(root, (asyncio.CancelledError, ValidationError)):
        text += f" ({type(root).__name__}: {_message(root) or 'no message'})"
    return _shorten(text)


def _message(exc: BaseException) -> str:
    """An exception's message; pydantic's, which spans several lines and links to its
    documentation, as the re-ask states it."""
    if isinstance(exc, ValidationError):
        return _describe_validation(exc)
    return str(exc) or type(exc).__name__


_NOT_TLS_FAILURES = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_BAD_URL = frozenset({"InvalidURL", "UnsupportedProtocol"})  # aiohttp's, httpx's (and httpx2's)


def permanent_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that no retry can cure, or None.

    A URL the HTTP client refuses (no scheme, no host), and a TLS handshake that failed
    on its own terms (a certificate that does not verify, a server that does not speak
    TLS) fail the same way on every attempt. A TLS connection closed half-way is a
    dropped connection, and may be retried.
    """
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLError) and not isinstance(e, _NOT_TLS_FAILURES):
            return e
        if any(c.__name__ in _BAD_URL for c in type(e).__mro__):
            return e
        stack += [e.__cause__, e.__context__]
    return None


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


@functools.lru_cache(maxsize=256)
def json_schema_of(schema: type[BaseModel]) -> tuple[str, dict[str, Any]]:
    """A name the APIs accept (``[a-zA-Z0-9_-]{1,64}``) and the pydantic JSON schema.

    Cached: pydantic rebuilds the schema on every call, which costs more than the rest of
    a request's client-side work. Callers must not mutate the returned dict.
    """
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64] or "answer"
    return name, schema.model_json_schema()


_FENCED = re.compile(r"\s*```(?:json)?\s*(.*?)\s*```\s*", flags=re.DOTALL)


def _strip_fences(text: str) -> str:
    """Models sometimes wrap JSON in a Markdown code fence; the JSON inside is what counts."""
    if "```" not in text:
        return text
    match = _FENCED.fullmatch(text)
    return match.group(1) if match else text


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON ({err['msg']})")
        else:
            where = ".".join(str(p) for p in err["loc"]) or "(root)"
            parts.append(f"{where}: {err['msg']}")
    return _shorten("; ".join(parts))


def _reask(reason: str) -> str:
    return (
        f"Your reply did not match the required JSON schema: {reason}. "
        "Reply again with only a JSON object that matches the schema."
    )


def _shorten(text: str, limit: int = 500) -> str:
    """One line (a reason ends up in one line of a log), at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
