from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.gateway.wsproxy import relayable_close_code


@pytest.mark.parametrize(
    ("received", "sent"),
    [(1000, 1000), (1001, 1001), (1005, 1000), (1006, 1011), (None, 1011), (4404, 4404)],
)
def test_close_codes_that_cannot_be_sent_are_replaced(received: int | None, sent: int) -> None:
    assert relayable_close_code(received) == sent


@given(st.one_of(st.none(), st.integers(min_value=-10, max_value=70000)))
def test_the_relayed_code_is_always_sendable(code: int | None) -> None:
    relayed = relayable_close_code(code)
    assert relayed in range(1000, 1004) or relayed in range(1007, 1015) or 3000 <= relayed < 5000
