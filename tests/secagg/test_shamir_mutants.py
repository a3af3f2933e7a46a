"""secagg.shamir: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import shamir
from secagg.errors import ConfigError, IntegrityError, ThresholdError


@given(length=st.integers(1, 31), excess=st.integers(0, 7), data=st.data())
def test_consistent_shares_of_a_value_too_long_for_their_length_are_integrity_error(
    length: int, excess: int, data: st.DataObject
) -> None:
    """Shares on one polynomial whose secret needs more bytes than they declare are refused as an
    integrity failure (a malicious dealer), never an OverflowError from the byte conversion."""
    secret = (1 << (8 * length + excess)).to_bytes(length + 1, "big")
    t = data.draw(st.integers(1, 4))
    shares = [dataclasses.replace(s, length=length) for s in shamir.split(secret, t + 1, t)]
    with pytest.raises(IntegrityError, match="does not fit the declared length"):
        shamir.combine(shares, t)


@pytest.mark.parametrize("t", [True, 2.0, "2", 0])
def test_a_threshold_that_is_not_a_positive_int_is_threshold_error(t: object) -> None:
    shares = shamir.split(b"secret", 3, 2)
    with pytest.raises(ThresholdError):
        shamir.combine(shares, t)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["x", "y", "length"])
@pytest.mark.parametrize("bad", [True, 1.0, "1"])
def test_a_share_field_that_is_not_an_int_is_malformed(field: str, bad: object) -> None:
    """Share fields must be ints (bools and floats too are refused), whether parsed or handed in."""
    shares = shamir.split(b"secret", 3, 2)
    shares[0] = dataclasses.replace(shares[0], **{field: bad})
    with pytest.raises(IntegrityError, match="malformed share"):
        shamir.combine(shares, 2)
    with pytest.raises(ConfigError):
        shares[0].to_bytes()


def test_explicit_x_coordinates_take_the_whole_range_and_nothing_outside() -> None:
    xs = [1, shamir.MAX_X, 7]
    shares = shamir.split(b"secret", 3, 2, xs=xs)
    assert [s.x for s in shares] == xs
    assert shamir.combine(shares[:2], 2) == b"secret"
    for bad in (0, shamir.MAX_X + 1):
        with pytest.raises(ConfigError):
            shamir.split(b"secret", 3, 2, xs=[bad, 2, 3])


@pytest.mark.parametrize("n, t", [(True, 1), (2, True), (3.0, 2), (3, 2.0)])
def test_split_counts_that_are_not_ints_are_config_errors(n: object, t: object) -> None:
    with pytest.raises(ConfigError, match="must be an integer"):
        shamir.split(b"secret", n, t)  # type: ignore[arg-type]
