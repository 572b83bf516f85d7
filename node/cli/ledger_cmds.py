"""``pcnode ledger ...`` (verify, checkpoint, proof, export, replay)."""
