"""Homomorphic encryption wrappers: Paillier (``phe`` + ``gmpy2``) and CKKS (``tenseal``).

* :mod:`protocols.he.paillier` - keys, fast owner-side encryption (CRT + DJN), fixed-width
  ciphertext serialisation with validation.
* :mod:`protocols.he.packing` - fixed-point encoding and slot packing with a documented bit budget.
* :mod:`protocols.he.ckks` - named CKKS parameters, secret and public contexts.
* :mod:`protocols.he.pool` - spawn-only process pools for the heavy loops.

Public material (public keys, public contexts) and secret material (secret keys,
secret contexts) are separate classes; only the former have peer-facing serialisers.
"""
