"""Tests for secagg.shamir: t-of-n sharing over GF(2**256 + 297)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import shamir
from secagg.errors import ConfigError, DecodeError, IntegrityError, ThresholdError
from secagg.shamir import Share
from secagg.testing.strategies import shamir_params

secret_bytes = st.binary(min_size=1, max_size=shamir.MAX_SECRET_BYTES)


def test_prime_is_prime_and_just_above_2_256() -> None:
    gmpy2 = pytest.importorskip("gmpy2")  # the `he` extra; core code does not need it
    assert gmpy2.is_prime(shamir.PRIME, 50)
    assert shamir.PRIME == gmpy2.next_prime(2**256)
    assert shamir.PRIME.bit_length() == 257


@given(secret=secret_bytes, params=shamir_params(max_n=12), data=st.data())
def test_any_t_shares_reconstruct_and_t_minus_1_raise(
    secret: bytes, params: tuple[int, int], data: st.DataObject
) -> None:
    n, t = params
    shares = shamir.split(secret, n, t)
    assert [s.x for s in shares] == list(range(1, n + 1))
    subset = data.draw(st.permutations(shares)).copy()[: data.draw(st.integers(t, n))]
    assert shamir.combine(subset, t) == secret
    with pytest.raises(ThresholdError) as err:
        shamir.combine(subset[: t - 1], t)
    assert (err.value.needed, err.value.got) == (t, t - 1)


def test_every_t_subset_reconstructs_small_case() -> None:
    secret = b"\x00\x01" + bytes(range(30))  # leading zero byte survives
    shares = shamir.split(secret, 6, 3)
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine(list(subset), 3) == secret


def test_custom_xs_and_seeded_rng_are_deterministic() -> None:
    xs = [7, 3, 1000, 2**32 - 1]
    a = shamir.split(b"seed", 4, 2, xs=xs, rng=random.Random(1).randrange)
    b = shamir.split(b"seed", 4, 2, xs=xs, rng=random.Random(1).randrange)
    assert a == b and [s.x for s in a] == xs
    assert shamir.combine(a[2:], 2) == b"seed"


def test_threshold_one_replicates_the_secret() -> None:
    # t = 1 is replication: every share carries the secret itself.
    shares = shamir.split(b"\x05", 3, 1)
    assert all(s.y == 5 for s in shares)


@pytest.mark.parametrize("n,t", [(3, 0), (3, 4), (1, 2), (5, -1)])
def test_threshold_out_of_range_is_threshold_error(n: int, t: int) -> None:
    with pytest.raises(ThresholdError):
        shamir.split(b"s", n, t)


@pytest.mark.parametrize(
    "xs", [[1, 1, 2], [0, 1, 2], [1, 2, -3], [1, 2, 2**32], [1, 2], [1, 2, 3.0], [1, 2, True]]
)
def test_bad_xs_is_config_error(xs: list) -> None:
    with pytest.raises(ConfigError):
        shamir.split(b"s", 3, 2, xs=xs)


@pytest.mark.parametrize("secret", [b"", bytes(33), "text", 5])
def test_bad_secret_is_config_error(secret: object) -> None:
    with pytest.raises(ConfigError):
        shamir.split(secret, 3, 2)  # type: ignore[arg-type]


def test_duplicate_x_is_integrity_error() -> None:
    shares = shamir.split(b"secret", 5, 3)
    with pytest.raises(IntegrityError):
        shamir.combine([shares[0], shares[0], shares[1]], 3)
    forged = Share(shares[0].x, (shares[0].y + 1) % shamir.PRIME, shares[0].length)
    with pytest.raises(IntegrityError):
        shamir.combine([shares[0], forged, shares[1], shares[2]], 3)


@given(secret=secret_bytes, params=shamir_params(max_n=10), data=st.data())
def test_more_than_t_inconsistent_shares_are_integrity_error(
    secret: bytes, params: tuple[int, int], data: st.DataObject
) -> None:
    n, t = params
    if n == t:
        n += 1
    shares = shamir.split(secret, n, t)
    index = data.draw(st.integers(0, n - 1))
    delta = data.draw(st.integers(1, shamir.PRIME - 1))
    bad = shares[index]
    shares[index] = Share(bad.x, (bad.y + delta) % shamir.PRIME, bad.length)
    with pytest.raises(IntegrityError):
        shamir.combine(shares, t)


def test_mismatched_lengths_and_oversized_values_are_integrity_errors() -> None:
    a = shamir.split(b"\x01\x02", 3, 2)
    b = shamir.split(b"\x03", 3, 2)
    with pytest.raises(IntegrityError):
        shamir.combine([a[0], b[1]], 2)
    # Shares of a 2-byte secret relabelled as a 1-byte secret: value does not fit.
    relabelled = [Share(s.x, s.y, 1) for s in shamir.split(b"\xff\xff", 3, 2)]
    with pytest.raises(IntegrityError):
        shamir.combine(relabelled, 2)


@pytest.mark.parametrize(
    "share",
    [Share(0, 1, 4), Share(1, shamir.PRIME, 4), Share(1, -1, 4), Share(1, 1, 0), Share(1, 1, 33)],
)
def test_out_of_range_shares_are_integrity_errors(share: Share) -> None:
    good = shamir.split(b"abcd", 3, 2)
    with pytest.raises(IntegrityError):
        shamir.combine([share, good[1]], 2)


def test_combine_t_below_one_is_threshold_error() -> None:
    with pytest.raises(ThresholdError):
        shamir.combine(shamir.split(b"x", 2, 1), 0)


@given(secrets=st.lists(secret_bytes, min_size=1, max_size=6), params=shamir_params(max_n=8))
def test_split_many_and_combine_many_round_trip(secrets: list[bytes], params: tuple[int, int]) -> None:
    n, t = params
    share_lists = shamir.split_many(secrets, n, t)
    assert len(share_lists) == len(secrets) and all(len(s) == n for s in share_lists)
    survivors = [lst[n - t :] for lst in share_lists]  # same x-set: one cached plan
    assert shamir.combine_many(survivors, t) == secrets
    assert shamir.combine_many(share_lists, t) == secrets


def test_combine_many_reports_the_bad_list() -> None:
    good, bad = shamir.split_many([b"a", b"b"], 4, 2)
    bad[3] = Share(bad[3].x, (bad[3].y + 1) % shamir.PRIME, bad[3].length)
    with pytest.raises(IntegrityError):
        shamir.combine_many([good, bad], 2)


@given(secret=secret_bytes, params=shamir_params(max_n=5))
def test_share_bytes_round_trip(secret: bytes, params: tuple[int, int]) -> None:
    for share in shamir.split(secret, *params):
        data = share.to_bytes()
        assert len(data) == shamir.SHARE_BYTES
        assert Share.from_bytes(data) == share


@given(data=st.one_of(st.binary(max_size=80), st.binary(min_size=38, max_size=38)))
def test_fuzzed_share_bytes_give_share_or_decode_error(data: bytes) -> None:
    try:
        share = Share.from_bytes(data)
    except DecodeError:
        return
    assert share.to_bytes() == data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(37),
        bytes(39),
        bytes(4) + b"\x04" + bytes(33),  # x = 0
        b"\x00\x00\x00\x01\x00" + bytes(33),  # length 0
        b"\x00\x00\x00\x01\x21" + bytes(33),  # length 33
        b"\x00\x00\x00\x01\x04" + shamir.PRIME.to_bytes(33, "big"),  # y = p
    ],
)
def test_malformed_share_bytes_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Share.from_bytes(data)


def test_share_to_bytes_rejects_out_of_range() -> None:
    with pytest.raises(ConfigError):
        Share(0, 1, 1).to_bytes()


def test_pure_python_fallback_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Core must work without gmpy2 (an optional extra)."""
    import importlib.util
    import sys

    monkeypatch.setitem(sys.modules, "gmpy2", None)  # makes `import gmpy2` fail
    spec = importlib.util.spec_from_file_location("secagg._shamir_no_gmpy2", shamir.__file__)
    assert spec is not None and spec.loader is not None
    fallback = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "secagg._shamir_no_gmpy2", fallback)
    fallback.__package__ = "secagg"
    spec.loader.exec_module(fallback)
    assert fallback._mpz is int
    shares = fallback.split(b"fallback", 5, 3, rng=random.Random(3).randrange)
    reference = shamir.split(b"fallback", 5, 3, rng=random.Random(3).randrange)
    assert [(s.x, s.y, s.length) for s in shares] == [(s.x, s.y, s.length) for s in reference]
    assert fallback.combine(shares, 3) == b"fallback"
    with pytest.raises(IntegrityError):
        bad = [fallback.Share(s.x, s.y, s.length) for s in shares]
        bad[0] = fallback.Share(bad[0].x, bad[0].y ^ 1, bad[0].length)
        fallback.combine(bad, 3)


def test_universe_weights_equal_direct_weights() -> None:
    universe = shamir._Universe({3, 5, 8, 13, 21, 34, 55})
    subset = [34, 3, 13, 55, 8]
    assert universe.weights(subset) == shamir._barycentric(subset)


@given(params=shamir_params(max_n=14), data=st.data())
def test_complete_graph_with_dropouts_reconstructs_and_checks(
    params: tuple[int, int], data: st.DataObject
) -> None:
    """Lists that each miss a few points of their union take the universe path."""
    n, t = params
    secrets = [bytes([i + 1]) * 16 for i in range(4)]
    lists = shamir.split_many(secrets, n, t)
    survivors = []
    for shares in lists:
        dropped = data.draw(st.sets(st.integers(0, n - 1), max_size=max(0, min(n - t, n // 3))))
        survivors.append([s for i, s in enumerate(shares) if i not in dropped])
    assert shamir.combine_many(survivors, t) == secrets
    victim = data.draw(st.integers(0, len(survivors) - 1))
    if len(survivors[victim]) > t:
        bad = survivors[victim][0]
        survivors[victim][0] = Share(bad.x, (bad.y + 1) % shamir.PRIME, bad.length)
        with pytest.raises(IntegrityError):
            shamir.combine_many(survivors, t)
