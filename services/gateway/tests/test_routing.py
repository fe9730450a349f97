from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.gateway.routing import ReplicaSet, websocket_url


def urls(count: int) -> list[str]:
    return [f"http://replica-{index}:80" for index in range(count)]


def test_a_single_replica_is_always_returned() -> None:
    replicas = ReplicaSet(["http://only"])
    assert [replicas.order() for _ in range(3)] == [["http://only"]] * 3


def test_order_rotates_through_the_replicas() -> None:
    replicas = ReplicaSet(["a", "b", "c"])
    assert [replicas.order() for _ in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


@given(count=st.integers(min_value=1, max_value=12), calls=st.integers(min_value=1, max_value=40))
def test_order_always_returns_every_replica_exactly_once(count: int, calls: int) -> None:
    given_urls = urls(count)
    replicas = ReplicaSet(given_urls)
    for call in range(calls):
        order = replicas.order()
        assert len(order) == count
        assert sorted(order) == sorted(given_urls)
        start = call % count
        assert order == given_urls[start:] + given_urls[:start]
    assert replicas.urls == given_urls


@given(count=st.integers(min_value=1, max_value=12))
def test_every_replica_gets_a_turn_first_within_one_round(count: int) -> None:
    replicas = ReplicaSet(urls(count))
    firsts = [replicas.order()[0] for _ in range(count)]
    assert sorted(firsts) == sorted(urls(count))


def test_replica_sets_do_not_share_their_turn() -> None:
    one, two = ReplicaSet(["a", "b"]), ReplicaSet(["a", "b"])
    assert one.order() == ["a", "b"]
    assert one.order() == ["b", "a"]
    assert two.order() == ["a", "b"]


@pytest.mark.parametrize("empty", [[], ()])
def test_an_empty_replica_set_is_refused(empty: list[str]) -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        ReplicaSet(empty)


@pytest.mark.parametrize(
    ("http_url", "ws_url"),
    [
        ("http://127.0.0.1:8083", "ws://127.0.0.1:8083"),
        ("https://tracking.example", "wss://tracking.example"),
        ("http://tracking:8083/base", "ws://tracking:8083/base"),
        ("https://h:443/p?q=1", "wss://h:443/p?q=1"),
    ],
)
def test_websocket_url_swaps_the_scheme(http_url: str, ws_url: str) -> None:
    assert websocket_url(http_url) == ws_url
