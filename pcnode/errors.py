"""The one error hierarchy of pcnode, and the one table mapping it to wire codes.

Every error a user can cause or meet is a :class:`PcnodeError`. Each says what
went wrong and, where there is one, how to fix it (``hint``). The CLI prints
``str(error)`` as one line; gRPC servicers and the HTTP app map the class to a
status code through :data:`STATUS_TABLE` and nothing else.

Codes are gRPC status *names* (strings) so that this module imports neither
gRPC nor Flask; ``node.transport.status`` turns the name into a
``grpc.StatusCode``.
"""

from __future__ import annotations

from typing import Any


class PcnodeError(Exception):
    """Root of every expected pcnode error.

    ``message`` says what was wrong; ``hint`` says how to fix it; ``details``
    carries machine-readable evidence (never raw data: counts and digests only).
    """

    def __init__(self, message: str, *, hint: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: error class, message, hint and details."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "details": {k: _jsonable(v) for k, v in self.details.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# --- configuration and input -------------------------------------------------


class ConfigError(PcnodeError):
    """node.toml (or another config file) is missing, unreadable or invalid."""


class InvalidInput(PcnodeError):
    """A request, file, option or message is malformed."""


class NotFound(PcnodeError):
    """A named dataset, application, grant, job, entry or peer does not exist."""


class AlreadyExists(PcnodeError):
    """Something with that name or code exists already."""


class StaleDataset(PcnodeError):
    """A dataset's source changed after registration; it must be re-registered."""


# --- identity and authorisation -----------------------------------------------


class AuthenticationError(PcnodeError):
    """The caller could not be identified (bad certificate, unknown peer, bad token)."""


class PermissionDenied(PcnodeError):
    """The caller is identified but not allowed; ``details['rule']`` names the rule."""


class QuotaExhausted(PermissionDenied):
    """A grant's call quota or privacy budget is spent."""


# --- protocol and transport -----------------------------------------------------


class ProtocolError(PcnodeError):
    """A peer sent something the protocol does not allow (wrong shape, bad ciphertext)."""


class CryptoError(ProtocolError):
    """A ciphertext, key or signature is malformed, foreign or does not verify."""


class ChannelError(PcnodeError):
    """The link to a peer failed."""


class ChannelTimeout(ChannelError):
    """No message arrived within the receive timeout."""


class PeerUnavailable(ChannelError):
    """The peer vanished or cannot be reached."""


class Cancelled(ChannelError):
    """The job was cancelled by this party or a peer."""


class TranscriptMismatch(ProtocolError):
    """The parties of a job disagree on what was exchanged."""


# --- ledger ----------------------------------------------------------------------


class LedgerError(PcnodeError):
    """The ledger could not be written or read."""


class LedgerIntegrityError(LedgerError):
    """Verification failed; ``details`` carry index, expected and actual."""


class InternalError(PcnodeError):
    """A bug: something that should not happen. Report it with the log digest."""


#: The one table: error class -> (gRPC status name, HTTP status).
#: Lookup walks the MRO, so a subclass inherits its parent's row unless listed.
STATUS_TABLE: dict[type[PcnodeError], tuple[str, int]] = {
    ConfigError: ("FAILED_PRECONDITION", 500),
    InvalidInput: ("INVALID_ARGUMENT", 400),
    NotFound: ("NOT_FOUND", 404),
    AlreadyExists: ("ALREADY_EXISTS", 409),
    StaleDataset: ("FAILED_PRECONDITION", 409),
    AuthenticationError: ("UNAUTHENTICATED", 401),
    PermissionDenied: ("PERMISSION_DENIED", 403),
    QuotaExhausted: ("RESOURCE_EXHAUSTED", 429),
    ProtocolError: ("INVALID_ARGUMENT", 400),
    CryptoError: ("INVALID_ARGUMENT", 400),
    ChannelError: ("UNAVAILABLE", 503),
    ChannelTimeout: ("DEADLINE_EXCEEDED", 504),
    PeerUnavailable: ("UNAVAILABLE", 503),
    Cancelled: ("CANCELLED", 499),
    TranscriptMismatch: ("DATA_LOSS", 500),
    LedgerError: ("INTERNAL", 500),
    LedgerIntegrityError: ("DATA_LOSS", 500),
    InternalError: ("INTERNAL", 500),
    PcnodeError: ("UNKNOWN", 500),
}

#: The reverse direction, for a client turning a gRPC status back into an error.
ERROR_FOR_STATUS: dict[str, type[PcnodeError]] = {
    "INVALID_ARGUMENT": InvalidInput,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDenied,
    "RESOURCE_EXHAUSTED": QuotaExhausted,
    "FAILED_PRECONDITION": PcnodeError,
    "DEADLINE_EXCEEDED": ChannelTimeout,
    "UNAVAILABLE": PeerUnavailable,
    "CANCELLED": Cancelled,
    "DATA_LOSS": TranscriptMismatch,
}


def status_for(error: BaseException) -> tuple[str, int]:
    """Return the (gRPC status name, HTTP status) for ``error``.

    Anything that is not a :class:`PcnodeError` is a bug and maps to INTERNAL/500.
    """
    for cls in type(error).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]  # type: ignore[index]
    return ("INTERNAL", 500)
