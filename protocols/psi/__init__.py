"""ECDH private set intersection on Curve25519 (see ``docs/PSI.md``).

The node calls :func:`run_requester` / :func:`run_holder` with a Channel, the
items (a list, or an :class:`ItemSource` streaming chunks) and
:class:`PsiParams`; both return a :class:`PsiResult`.
"""

from .blinding import make_pool
from .normalize import Normalization
from .protocol import (
    MODES,
    JoinHandle,
    Progress,
    PsiParams,
    PsiResult,
    run_holder,
    run_requester,
)
from .source import ItemSource

__all__ = [
    "MODES",
    "ItemSource",
    "JoinHandle",
    "Normalization",
    "Progress",
    "PsiParams",
    "PsiResult",
    "make_pool",
    "run_holder",
    "run_requester",
]
