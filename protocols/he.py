"""Homomorphic-encryption aggregation: packed Paillier, threshold Paillier, CKKS.

Same session interface as SecAgg (``protocols.session``); ``protocols.sim.run``
accepts ``"paillier"``, ``"paillier-threshold"`` and ``"ckks"``. Stages:

0. ADVERTISE_KEYS: the server sends its X25519 public key; each client answers
   with a fresh X25519 public key (per session), signed with its Ed25519
   identity when ``config.identities`` is set.
1. SHARE_KEYS: the key holder (``config.key_holder``, default the lowest id)
   receives everyone's public keys (checking their signatures) and generates
   the session's HE key: a Paillier or CKKS key pair, or, as threshold
   *dealer*, a threshold Paillier key and one share per live client. It seals
   the secret key (or share i) to each client with AES-256-GCM under
   ``kex.agree`` of the two X25519 keys and signs the public key
   (:func:`key_transcript`); the server relays ciphertexts only.
2. MASKED_INPUT: every client checks the key holder's signature, opens its
   sealed key, quantises its update with the shared fixed-point encoder
   (weight n_k as the last, encrypted slot), packs and encrypts it, and sends
   it with an HMAC-SHA256 tag under a client–server key (``kex.agree``), so
   transport tampering is an ``IntegrityError``. The server checks the tag
   and each ciphertext (Paillier: a unit of Z*_{n²}), decodes and adds.
3. UNMASK: the server sends the aggregate ciphertexts (tagged) to surviving
   key holders. Shared key: ``config.decryptors`` survivors decrypt and return
   the integer sums. Threshold: every survivor returns a partial decryption
   with a proof; the server verifies each (a bad one is an ``IntegrityError``
   naming the party) and combines any t.

Layout: :mod:`protocols.he_config` (``HeConfig``, transcripts, scheme
back-ends, wire sizes), :mod:`protocols.he_server` and
:mod:`protocols.he_client` (the state machines, each a stage table on
:mod:`protocols.session`'s core), :mod:`protocols.he_messages` (wire
messages). This module re-exports their public names and registers the
schemes with ``protocols.sim``.

Both Paillier and CKKS carry the encoder's integers exactly (CKKS in integer
packing, ``secagg.ckks.integer_params``), so the result equals
``run_plaintext``'s bit for bit when the encoders' rounding agrees.

**Trust model**:

* ``paillier`` and ``ckks`` (shared secret key): every client holds the secret
  key, so **the server colluding with any one client decrypts every client's
  update**. ``HeConfig`` refuses them when ``max_corrupt > 0``.
* ``paillier-threshold``: no single party holds the key. With t >
  ``max_corrupt``, the colluding clients' shares, even with the server, do
  not decrypt anything. The dealer (the key holder) knows the factorisation
  while dealing and must erase it; it is **trusted during set-up only**.
* Signed ceremony (when ``HeConfig.identities`` is set): each client signs its
  session X25519 key and the key holder checks those signatures before
  sealing; the key holder signs the HE public key (Paillier n, the threshold
  key with its verification keys, or the public CKKS context), its X25519 key
  and the parties, bound to protocol, session, round and holder id
  (:func:`key_transcript`). Clients refuse an unsigned or mismatched key with
  an ``IntegrityError`` naming the key holder, so a server that substitutes
  keys learns nothing. **Without identities the ceremony is unsigned** and a
  malicious server can substitute keys and read every update
  (``tests/protocols/test_he_active.py`` shows both).
* The server refuses a Paillier ciphertext that is not a unit of Z*_{n²},
  naming its sender. A unit that encrypts an out-of-range plaintext cannot be
  attributed without range proofs; when it overflows the packing, the round
  aborts at decryption instead of returning a sum.
* Keys are per session: every session (round) runs a fresh ceremony, so keys
  rotate every round. Reusing a key across N rounds is not implemented.
* HE gives no integrity against the server: it can add any ciphertext it likes.
  Decryptors cannot check that what they are asked to decrypt is the
  aggregate, so a *malicious* server can still have one client's ciphertext
  decrypted (in all schemes). Privacy of individual updates holds against a
  semi-honest server only; the signed ceremony removes key substitution, not
  this.
"""

from __future__ import annotations

from typing import Any

from secagg.errors import require_extra
from secagg.paillier import DEFAULT_POOL_METHOD, usable_cores

from .he_client import HeClient
from .he_config import (
    SCHEMES,
    SHARED_KEY_SCHEMES,
    HeConfig,
    HeScheme,
    WireSizes,
    advert_transcript,
    ckks_chunk_sizes,
    key_transcript,
)
from .he_messages import (
    HeAdvertise,
    HeDecrypted,
    HeDecryptRequest,
    HeInput,
    HeKeyDelivery,
    HeKeyForward,
    HeKeyRequest,
    HeKeysBroadcast,
    HePartial,
    chunk_mac,
    pack_ints,
    unpack_ints,
)
from .he_server import HeServer
from .sim import ProtocolSpec, register_protocol

__all__ = [
    "SCHEMES",
    "SHARED_KEY_SCHEMES",
    "HeConfig",
    "HeScheme",
    "HeServer",
    "HeClient",
    "WireSizes",
    "advert_transcript",
    "key_transcript",
    "ckks_chunk_sizes",
    "register",
    "SCHEME_MODULES",
    "require_scheme",
    "HeKeyRequest",
    "HeAdvertise",
    "HeKeysBroadcast",
    "HeKeyDelivery",
    "HeKeyForward",
    "HeInput",
    "HeDecryptRequest",
    "HeDecrypted",
    "HePartial",
    "pack_ints",
    "unpack_ints",
    "chunk_mac",
]


#: The optional modules (all from the ``he`` extra) each scheme's key holder and clients need.
SCHEME_MODULES: dict[str, tuple[str, ...]] = {
    "paillier": ("phe", "gmpy2"),
    "paillier-threshold": ("gmpy2",),
    "ckks": ("tenseal",),
}


def require_scheme(scheme: str) -> None:
    """Raise :class:`~secagg.errors.MissingExtraError` (naming the ``he`` extra)
    unless the back-end of ``scheme`` is installed.

    Called when a round is configured, so that a missing back-end is refused
    before any party runs, not reported later as the key holder dropping out.
    """
    for module in SCHEME_MODULES.get(scheme, ()):
        require_extra(module, "he")


def register(
    *,
    key_bits: int = 2048,
    threshold_key_bits: int = 2048,
    decryptors: int = 2,
    workers: int | None = None,
    pool_method: str = DEFAULT_POOL_METHOD,
    max_corrupt: int = 0,
) -> None:
    """(Re)register the three HE protocols with ``protocols.sim``.

    Tests call it with small keys; deployments keep 2048 bits. Dealing a
    2048-bit threshold key generates two 1024-bit safe primes (can take minutes).
    The simulator's identities (``sim.run(..., active_security=True)``) sign
    the key ceremony; ``max_corrupt`` goes to every ``HeConfig``. ``workers``
    defaults to every usable core, and ``pool_method`` to DJN noise.
    """

    def builder(scheme: str):
        bits = threshold_key_bits if scheme == "paillier-threshold" else key_bits

        def build(
            client_ids, dim, *, encoder, weighted, threshold, min_survivors, identities=None, **_: Any
        ) -> HeConfig:
            require_scheme(scheme)
            return HeConfig(
                tuple(client_ids),
                dim,
                encoder,
                scheme,
                threshold=threshold,
                min_survivors=min_survivors or 1,
                weighted=weighted,
                key_bits=bits,
                decryptors=decryptors,
                workers=usable_cores() if workers is None else workers,
                pool_method=pool_method,
                max_corrupt=max_corrupt,
                identities=identities,
            )

        return build

    for scheme in SCHEMES:
        register_protocol(ProtocolSpec(scheme, builder(scheme), HeServer, HeClient), replace=True)


register()
