"""A shared rate budget whose URL is wrong is refused when the client is made, without the URL's password."""

from __future__ import annotations

import pytest

from billing_events import ConfigurationError, Togai


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2pw@127.0.0.1:99999/0?key=acme",  # a port out of range
        "redis://:hunter2pw@127.0.0.1:6379/0?key=acme&socket_timeout=soon",
        "redis://:hunter2pw@[::1/0?key=acme",
    ],
)
def test_a_broken_redis_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="rate_budget") as caught:
        Togai("token", max_requests_per_second=10, rate_budget=url)

    assert "hunter2pw" not in str(caught.value)
