"""Homomorphic encryption wrappers: Paillier (``phe`` + ``gmpy2``) and CKKS (SEAL via ``tenseal``).

* :mod:`protocols.he.paillier` - keys, fast owner-side encryption (CRT + DJN), fixed-width
  ciphertext serialisation with validation.
* :mod:`protocols.he.packing` - fixed-point encoding and slot packing with a documented bit budget.
* :mod:`protocols.he.ckks_coeff` - coefficient-packed CKKS for masked linear aggregates:
  the key owner's secret side, the other party's public side, exact coefficient-0 read-out.
* :mod:`protocols.he.coefficients` - exact integer-coefficient encoding through SEAL's encoder.
* :mod:`protocols.he.sealio` - byte-level save/load of SEAL objects held by tenseal.
* :mod:`protocols.he.pool` - spawn-only process pools for the heavy loops.

Public material (public keys, public contexts) and secret material (secret keys,
secret contexts) are separate classes; only the former have peer-facing serialisers.
"""
