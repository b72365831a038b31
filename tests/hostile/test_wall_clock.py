"""Item 4: every attempt has a wall-clock bound, and the retry deadline bounds the whole call."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli.support import togai_event, write_jsonl

from billing_events import AsyncLago, AsyncTogai, Lago, NotFoundError, RetryPolicy, Togai, partial_report
from billing_events._transport import bounded, call_deadline
from billing_events.budgets import Booking, open_budget
from billing_events.cli import main
from billing_events.errors import RequestTimeoutError
from hostile.conftest import TOKEN, statuses_once_cancelled
from hostile.server import Answer, HostileServer

# A valid answer, one byte every half second: 100 s in all, each read well inside httpx's timeouts.
TRICKLE = Answer("trickle", interval=0.5)
POLICY = RetryPolicy(max_attempts=10, deadline=3.0, initial_delay=0.01, max_delay=0.05)
# The bound the call promises (the deadline), plus generous slack for a loaded machine.
BOUND = 3.0 + 4.0


def test_sync_send_ends_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)
    with Togai(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
        started = time.monotonic()
        report = client.send([togai_event(i) for i in range(3)])
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    assert hostile.stored_count >= 3  # the server has the events: they must not be called delivered
    # The server may have them: unknown (a replay is safe), never delivered nor failed.
    assert [o.status.value for o in report] == ["unknown"] * 3
    assert all(isinstance(o.error, RequestTimeoutError) for o in report)


def test_each_attempt_ends_by_the_client_timeout(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)
    policy = RetryPolicy(max_attempts=2, deadline=60.0, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=hostile.url, timeout=1.0, retry=policy) as client:
        started = time.monotonic()
        client.send([togai_event(0)])
        elapsed = time.monotonic() - started
    assert hostile.requests == 2
    assert elapsed < 2 * 1.0 + 4.0


def test_the_deadline_cuts_the_attempt_in_flight(hostile: HostileServer) -> None:
    # A generous per-attempt timeout: only the call's deadline can end this attempt early.
    hostile.answer(TRICKLE)
    policy = RetryPolicy(max_attempts=3, deadline=2.0, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=hostile.url, timeout=30.0, retry=policy) as client:
        started = time.monotonic()
        [outcome] = client.send([togai_event(0)]).outcomes
        elapsed = time.monotonic() - started
    assert outcome.status.value == "unknown"
    assert hostile.stored_count == 1
    assert elapsed < 2.0 + 4.0


def test_async_send_ends_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)

    async def run() -> float:
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
            started = time.monotonic()
            report = await client.send([togai_event(i) for i in range(3)])
            assert [o.status.value for o in report] == ["unknown"] * 3
            return time.monotonic() - started

    assert asyncio.run(run()) < BOUND
    assert hostile.stored_count >= 3


def test_request_response_calls_end_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", status=404, interval=0.5, body=b'{"status":404,"error":"Not Found"}'))
    with Lago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.find_event("tx-1")
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    # And a quick 404 still reads as one: the bounds do not get in the way of a normal answer.
    hostile.answer(
        Answer("error", status=404, body=b'{"status":404,"error":"Not Found","code":"event_not_found"}')
    )
    with Lago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client, pytest.raises(NotFoundError):
        client.find_event("tx-1")


def test_async_request_response_calls_end_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", interval=0.5, body=b'{"fees":[]}' + b" " * 200))

    async def run() -> float:
        async with AsyncLago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                await client.estimate_fees("api_calls", "sub_1")
            return time.monotonic() - started

    assert asyncio.run(run()) < BOUND


def test_cli_ingest_ends_by_the_retry_deadline(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile.answer(TRICKLE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOGAI_API_TOKEN", TOKEN)
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(i) for i in range(5)])
    started = time.monotonic()
    code = main(
        ["ingest", "togai", str(source), "--base-url", hostile.url, "--timeout", "1", "--retry-deadline", "3"]
    )
    elapsed = time.monotonic() - started
    assert code != 0
    assert elapsed < BOUND
    assert hostile.stored_count >= 5


# -- A server that trickles its status line and headers (not its body) -------------------------------
# One byte every 0.2 s: each read returns well inside any timeout, and the head alone takes ~60 s.
# The server sets ``outlasted`` once it has trickled one answer for three times the bound the
# call promises: a client still listening by then is not bounded.
DEADLINE = 2.0


def slow_head(bound: float, **extra: object) -> Answer:
    return Answer("slow_head", interval=0.2, patience=3 * bound, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeout", "policy", "bound"),
    [
        # A long attempt timeout: only the call's deadline can end the attempt in flight.
        (30.0, RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01), DEADLINE),
        # A long deadline: each attempt ends by the client's timeout.
        (1.0, RetryPolicy(max_attempts=2, deadline=60.0, initial_delay=0.01, max_delay=0.01), 1.0),
    ],
    ids=["deadline", "timeout"],
)
def test_sync_send_bounds_a_trickled_head(
    hostile: HostileServer, timeout: float, policy: RetryPolicy, bound: float
) -> None:
    hostile.answer(slow_head(bound))
    with Togai(TOKEN, base_url=hostile.url, timeout=timeout, retry=policy) as client:
        report = client.send([togai_event(i) for i in range(3)])
    assert not hostile.outlasted.is_set()
    assert hostile.stored_count >= 3  # stored before the head began: never delivered nor failed
    assert [o.status.value for o in report] == ["unknown"] * 3
    assert all(isinstance(o.error, RequestTimeoutError) for o in report)


def test_sync_find_event_bounds_a_trickled_head(hostile: HostileServer) -> None:
    hostile.answer(slow_head(DEADLINE, status=404, body=b'{"status":404,"error":"Not Found"}'))
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)
    with (
        Lago(TOKEN, base_url=hostile.url, timeout=30.0, retry=policy) as client,
        pytest.raises(RequestTimeoutError),
    ):
        client.find_event("tx-1")
    assert not hostile.outlasted.is_set()
    assert hostile.requests >= 1


def test_async_send_bounds_a_trickled_head(hostile: HostileServer) -> None:
    hostile.answer(slow_head(DEADLINE))
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)

    async def run() -> list[str]:
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=30.0, retry=policy) as client:
            report = await client.send([togai_event(i) for i in range(3)])
            return [o.status.value for o in report]

    statuses = asyncio.run(run())
    assert not hostile.outlasted.is_set()
    assert hostile.stored_count >= 3
    assert statuses == ["unknown"] * 3


def test_async_find_event_bounds_a_trickled_head(hostile: HostileServer) -> None:
    hostile.answer(slow_head(DEADLINE, status=404, body=b'{"status":404,"error":"Not Found"}'))
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)

    async def run() -> None:
        async with AsyncLago(TOKEN, base_url=hostile.url, timeout=30.0, retry=policy) as client:
            with pytest.raises(RequestTimeoutError):
                await client.find_event("tx-1")

    asyncio.run(run())
    assert not hostile.outlasted.is_set()


def test_the_environments_proxy_is_used_and_bounded(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hostile server answers requests addressed to another host: here it is the HTTP proxy.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", hostile.url)
    monkeypatch.setenv("http_proxy", hostile.url)
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url="http://billing.invalid", timeout=30.0, retry=policy) as client:
        assert [o.status.value for o in client.send([togai_event(0)])] == ["delivered"]
        hostile.answer(slow_head(DEADLINE))
        assert [o.status.value for o in client.send([togai_event(1)])] == ["unknown"]
    assert not hostile.outlasted.is_set()
    assert hostile.stored_count == 2


class SlowReader:
    """Accepts one connection and reads 256 KiB of it every 0.1 s; sets ``outlasted`` after ``patience``."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.outlasted = threading.Event()
        self._done = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)  # inherited on accept
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _run(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection:
                connection.settimeout(5.0)
                started = time.monotonic()
                # The client's kernel keeps sending what it had buffered after a hang-up: stop on close().
                while not self._done.is_set() and connection.recv(256 * 1024):
                    if time.monotonic() - started > self.patience:
                        self.outlasted.set()
                        return
                    time.sleep(0.1)
        except OSError:
            return  # closed before a client came, or the client went silent

    def close(self) -> None:
        self._done.set()
        self._listener.close()
        self._thread.join()


def test_a_slowly_read_request_ends_by_the_deadline() -> None:
    # 64 MiB read at about 2.5 MB/s: each send makes progress within any timeout, the whole takes ~25 s.
    server = SlowReader(patience=3 * DEADLINE)
    try:
        with (
            httpx.Client(transport=bounded(None, 30.0, server.url)) as client,
            call_deadline(time.monotonic() + DEADLINE),
            pytest.raises(httpx.WriteTimeout),
        ):
            client.post(server.url, content=b"x" * (64 * 1024 * 1024))
        assert not server.outlasted.is_set()
    finally:
        server.close()


class HangingResolver:
    """``socket.getaddrinfo`` for one host name that answers only when released (or after ``patience``).

    Python's resolver takes no timeout, so a connect to that host is bounded only if the
    caller stops waiting for the lookup.
    """

    HOST = "dns-hangs.invalid"

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self.asked = threading.Event()
        self.released = threading.Event()
        self.outlasted = threading.Event()
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes the IDNA-encoded name
        if name != self.HOST:
            return self._real(host, *args, **kwargs)
        self.asked.set()
        if not self.released.wait(self.patience):
            self.outlasted.set()
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def hanging_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingResolver]:
    resolver = HangingResolver(patience=3 * DEADLINE)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        yield resolver
    finally:
        resolver.released.set()


def test_sync_send_bounds_a_hanging_name_lookup(hanging_resolver: HangingResolver) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=f"http://{HangingResolver.HOST}", timeout=30.0, retry=policy) as client:
        report = client.send([togai_event(i) for i in range(3)])
    assert hanging_resolver.asked.is_set()
    assert not hanging_resolver.outlasted.is_set()
    # Nothing left the machine: the provider surely does not have them.
    assert [o.status.value for o in report] == ["failed"] * 3


def test_sync_find_event_bounds_a_hanging_name_lookup(hanging_resolver: HangingResolver) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)
    with (
        Lago(TOKEN, base_url=f"http://{HangingResolver.HOST}/api/v1", timeout=30.0, retry=policy) as client,
        pytest.raises(RequestTimeoutError),
    ):
        client.find_event("tx-1")
    assert not hanging_resolver.outlasted.is_set()


def test_async_send_bounds_a_hanging_name_lookup(hanging_resolver: HangingResolver) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=DEADLINE, initial_delay=0.01, max_delay=0.01)

    async def run() -> list[str]:
        base_url = f"http://{HangingResolver.HOST}"
        async with AsyncTogai(TOKEN, base_url=base_url, timeout=30.0, retry=policy) as client:
            report = await client.send([togai_event(i) for i in range(3)])
            return [o.status.value for o in report]

    statuses = asyncio.run(run())
    assert hanging_resolver.asked.is_set()
    assert not hanging_resolver.outlasted.is_set()
    assert statuses == ["failed"] * 3


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_host_whose_first_address_refuses_is_reached_at_the_next(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # The name resolves to two loopback addresses; only the second one listens.
    port = int(hostile.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def two_addresses(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name != "two-addresses.invalid":
            return real(host, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    base_url = f"http://two-addresses.invalid:{port}"
    if kind == "sync":
        with Togai(TOKEN, base_url=base_url, timeout=5.0) as client:
            statuses = [o.status.value for o in client.send([togai_event(0)])]
    else:

        async def run() -> list[str]:
            async with AsyncTogai(TOKEN, base_url=base_url, timeout=5.0) as client:
                return [o.status.value for o in await client.send([togai_event(0)])]

        statuses = asyncio.run(run())
    assert statuses == ["delivered"]
    assert hostile.stored_count == 1


def test_ctrl_c_while_the_host_is_looked_up_ends_the_events_failed(hanging_resolver: HangingResolver) -> None:
    # Nothing left the machine: the events are surely not stored, and the report says so.
    main = threading.get_ident()

    def interrupt_once_asked() -> None:
        if hanging_resolver.asked.wait(10):
            signal.pthread_kill(main, signal.SIGINT)

    policy = RetryPolicy(max_attempts=3, deadline=30.0, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=f"http://{HangingResolver.HOST}", timeout=30.0, retry=policy) as client:
        threading.Thread(target=interrupt_once_asked, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as caught:
            client.send([togai_event(i) for i in range(3)])
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status.value for o in report] == ["failed"] * 3


def test_a_cancellation_while_the_host_is_looked_up_ends_the_events_failed(
    hanging_resolver: HangingResolver,
) -> None:
    policy = RetryPolicy(max_attempts=3, deadline=30.0, initial_delay=0.01, max_delay=0.01)

    async def run() -> list[str]:
        base_url = f"http://{HangingResolver.HOST}"
        async with AsyncTogai(TOKEN, base_url=base_url, timeout=30.0, retry=policy) as client:
            sending = asyncio.ensure_future(client.send([togai_event(i) for i in range(3)]))
            assert await asyncio.to_thread(hanging_resolver.asked.wait, 10)
            return await statuses_once_cancelled(sending)

    assert asyncio.run(run()) == ["failed"] * 3


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_redis_rate_budget_bounds_a_hanging_name_lookup(
    hanging_resolver: HangingResolver, kind: str
) -> None:
    # redis-py looks its host up with no bound: the budget looks it up itself, within its own bound,
    # and paces locally meanwhile.
    budget = open_budget(f"redis://{HangingResolver.HOST}:6379/0?key=lookup-test")

    if kind == "sync":
        waits = [budget.reserve("events", 0.01, 0.01, 5.0) for _ in range(2)]
    else:

        async def reserve_twice() -> list[Booking | None]:
            return [await budget.areserve("events", 0.01, 0.01, 5.0) for _ in range(2)]

        waits = asyncio.run(reserve_twice())

    assert hanging_resolver.asked.is_set()
    assert not hanging_resolver.outlasted.is_set()
    assert waits[0] is not None and waits[0].wait == 0.0 and waits[1] is not None  # the local budget's slots
