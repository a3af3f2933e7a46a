"""RFC 5869 known answers for HKDF-SHA256, the construction behind kex and prg.

``secagg.kex`` and ``secagg.prg`` call ``cryptography``'s HKDF with SHA-256;
these vectors pin that exact construction (extract, expand and both together).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from secagg import kex
from tests.vectors import load

CASES = load("hkdf_rfc5869")["cases"]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hkdf_sha256_matches_rfc5869(case: dict) -> None:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=case["length"],
        salt=_hex(case["salt"]) or None,  # RFC 5869 §2.2: an absent salt is HashLen zeros
        info=_hex(case["info"]),
    ).derive(_hex(case["ikm"]))
    assert okm.hex() == case["okm"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_extract_then_expand_matches_rfc5869_prk_and_okm(case: dict) -> None:
    mac = hmac.HMAC(_hex(case["salt"]) or bytes(32), hashes.SHA256())
    mac.update(_hex(case["ikm"]))
    prk = mac.finalize()
    assert prk.hex() == case["prk"]
    okm = HKDFExpand(hashes.SHA256(), case["length"], _hex(case["info"])).derive(prk)
    assert okm.hex() == case["okm"]


def test_kex_hkdf_is_the_rfc5869_construction() -> None:
    # kex._hkdf uses salt=None (HashLen zeros): the RFC's test case 3.
    case = CASES[2]
    assert kex._hkdf(_hex(case["ikm"]), _hex(case["info"]), case["length"]).hex() == case["okm"]
