"""SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020): one
implementation, with the neighbour graph as a parameter.

Stages (Bonawitz et al. 2017, Fig. 4), declared once per side as a stage table
on the shared session core (:mod:`protocols.session`: header checks before
bodies, decode limits from the config, duplicates, dropouts, aborts):

0. ADVERTISE_KEYS: client u sends c_pk (share encryption), s_pk (masks) and a
   hash commitment to its self-mask seed b_u, signed with its Ed25519 identity
   when identities are configured.
1. SHARE_KEYS: u Shamir-shares its self-mask seed b_u and the seed of its mask
   key s_u among its neighbours *and itself* (threshold t; Bonawitz et al. share
   among all of U1, u included, so t survivors suffice to unmask), each pair for
   a neighbour sealed with AES-GCM under agree(c_u, c_v); the server relays
   ciphertexts only. u also gives the server the hash of every share it deals
   (signed per holder when identities are configured); holders check what
   they receive against those hashes.
2. MASKED_INPUT: u sends y_u = encode(x_u) + PRG(b_u) + Σ_v ±PRG(s_uv) mod 2^bits
   over the neighbours v whose shares reached it (+ if u < v, − if u > v).
3. CONSISTENCY (active security only): the server sends the survivor set U3,
   clients sign it, and each client checks t neighbours' signatures on the same
   U3 before unmasking, so a server cannot show different survivor sets.
4. UNMASK: u reveals, per neighbour v, the share of b_v if v survived and the
   share of s_v if it dropped, never both. The server checks every revealed
   share against its dealer's hash, rebuilds b_u of survivors and s_v of
   dropouts, checks each against its commitment (or s_pk), and removes the
   masks.

Who misbehaved: errors about a message's *sender* carry ``client_id`` (the
peer); a revealed share that misses its hash names the holder, secrets that do
not rebuild consistently name their dealer; ``local=True`` marks a caller bug.
A round returns the exact sum of the survivors' inputs, or raises.
"""

from __future__ import annotations

from .secagg_binding import mask_context, pair_sign, share_context, survivors_transcript
from .secagg_client import SecAggClient, decode_limits
from .secagg_server import SecAggServer

__all__ = [
    "SecAggServer",
    "SecAggClient",
    "mask_context",
    "share_context",
    "pair_sign",
    "survivors_transcript",
    "decode_limits",
]
