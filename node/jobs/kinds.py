"""Job kinds: what each kind validates, authorises and runs at each party.

A kind is a thin adapter between the node (catalog, grants, files) and a pure
protocol in ``protocols/``. It never touches the ledger or the transport:
:mod:`node.jobs.runner` does both, for every kind, so no joint job can run
without its start and end entries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pcnode.errors import InvalidInput
from protocols.channel import Channel

if TYPE_CHECKING:
    from node.jobs.spec import JobSpec
    from node.services import NodeServices

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``; the CLI renders it as a progress bar."""


@dataclass(frozen=True)
class Authorization:
    """Why this party may take part: the grant and the fields the ledger records."""

    grant_id: str = ""
    operator: str = ""
    dataset: str = ""
    purpose: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobContext:
    """Everything one party's run of a job may use."""

    services: NodeServices
    spec: JobSpec
    role: str
    channels: dict[str, Channel]
    authorization: Authorization
    progress: Progress

    @property
    def me(self) -> str:
        """This party's name."""
        return self.services.name

    def party_with_role(self, role: str) -> str:
        """The (single) party holding ``role``."""
        names = [n for n, r in self.spec.parties.items() if r == role]
        if len(names) != 1:
            raise InvalidInput(f"job needs exactly one {role!r} party, has {len(names)}")
        return names[0]


@dataclass
class JobOutcome:
    """What a party's run produced: a JSON summary, an optional local result, ledger counts."""

    summary: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    rows_in: int = 0
    rows_out: int = 0
    result_digest: str = ""
    job_id: str = ""
    transcript_hash: str = ""


class JobKind(ABC):
    """One kind of joint job. Subclasses register themselves in :data:`KINDS`."""

    name: ClassVar[str]
    #: the ledger's ``operation`` field for this kind (psi, stats, fl, selftest)
    operation: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]

    def validate(self, spec: JobSpec) -> None:
        """Check roles and parameters; raise InvalidInput naming the problem."""
        unknown = set(spec.parties.values()) - set(self.roles)
        if unknown:
            raise InvalidInput(f"job kind {self.name!r} has no role(s) {sorted(unknown)}",
                               hint=f"roles are {', '.join(self.roles)}")

    def authorize(self, services: NodeServices, spec: JobSpec, role: str) -> Authorization:
        """Decide whether this party takes part (default: yes, no grant needed)."""
        return Authorization()

    def mode(self, spec: JobSpec) -> str:
        """The ledger's ``mode`` field."""
        return str(spec.params.get("mode", ""))

    @abstractmethod
    def run(self, ctx: JobContext) -> JobOutcome:
        """Run this party's role of the protocol over ``ctx.channels``."""


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add ``kind`` to the registry (module import time)."""
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The registered kind ``name``; InvalidInput listing the known kinds otherwise."""
    _load_builtin_kinds()
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidInput(f"unknown job kind {name!r}",
                           hint=f"known kinds: {', '.join(sorted(KINDS))}") from None


def _load_builtin_kinds() -> None:
    import node.jobs.selftest  # noqa: F401

    for module in ("node.jobs.psi_job", "node.jobs.stats_job", "node.jobs.fl_job",
                   "node.jobs.fl_horizontal_job"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
