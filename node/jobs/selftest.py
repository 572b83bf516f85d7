"""``selftest``: a federation self-test that runs a real N-party protocol (secure sum).

Each party contributes a fresh random vector plus a final element 1. Every
party learns the total; the last element must equal the number of parties, a
check every party can make without seeing anyone's vector. Use it to confirm
that nodes authenticate each other and that the data plane carries large
payloads (``--length`` sets the vector length; 8 bytes per element).
"""

from __future__ import annotations

import hashlib

import numpy as np

from node.jobs.kinds import JobContext, JobKind, JobOutcome, register
from node.jobs.spec import JobSpec
from pcnode.errors import InvalidInput, ProtocolError
from protocols.secure_sum import secure_sum

#: Longest vector a self-test may ask for (64 MiB per message).
MAX_LENGTH = 8 << 20


class SelfTest(JobKind):
    """Secure sum across all parties; checks the count element."""

    name = "selftest"
    operation = "selftest"
    roles = ("member",)

    def validate(self, spec: JobSpec) -> None:
        """Roles are all ``member``; ``length`` is 1..MAX_LENGTH."""
        super().validate(spec)
        length = spec.params.get("length", 1024)
        if not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
            raise InvalidInput(f"selftest length must be an integer 1..{MAX_LENGTH}")

    def run(self, ctx: JobContext) -> JobOutcome:
        """Contribute a random vector and a 1; verify the sum's last element."""
        length = int(ctx.spec.params.get("length", 1024))
        rng = np.random.default_rng()
        mine = np.append(rng.integers(-(2**40), 2**40, size=length, dtype=np.int64), 1)
        ctx.progress("summing", 0, len(ctx.channels))
        total = secure_sum(ctx.me, ctx.channels, mine)
        ctx.progress("summing", len(ctx.channels), len(ctx.channels))
        if int(total[-1]) != len(ctx.spec.parties):
            raise ProtocolError("secure sum failed its check",
                                expected=len(ctx.spec.parties), actual=int(total[-1]))
        digest = hashlib.sha256(total.tobytes()).hexdigest()
        return JobOutcome(
            summary={"parties": len(ctx.spec.parties), "length": length, "check": "ok",
                     "sum_digest": digest},
            rows_in=length * len(ctx.channels), rows_out=length, result_digest=digest,
        )


register(SelfTest())
