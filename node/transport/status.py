"""Translate between pcnode errors and gRPC status codes, via ``pcnode.errors.STATUS_TABLE``."""

from __future__ import annotations

import json
import logging

import grpc

from pcnode.errors import (
    ERROR_FOR_STATUS,
    AuthenticationError,
    PcnodeError,
    PeerUnavailable,
    status_for,
)

log = logging.getLogger(__name__)

#: Trailing-metadata key carrying the error's JSON (class, message, hint, details).
ERROR_METADATA_KEY = "pcnode-error-bin"


def abort_with(context: grpc.ServicerContext, error: BaseException) -> None:
    """Abort the RPC with the status the table gives for ``error`` (never returns)."""
    name, _ = status_for(error)
    if isinstance(error, PcnodeError):
        body = json.dumps(error.to_dict(), ensure_ascii=False).encode()
        context.set_trailing_metadata(((ERROR_METADATA_KEY, body),))
        context.abort(grpc.StatusCode[name], str(error))
    log.exception("internal error while serving a peer call")
    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the serving node's log")


#: TLS alert strings that mean "the other side refused our certificate".
_HANDSHAKE_REFUSALS = {
    "UNKNOWN_CA": "our certificate was issued by a CA the peer does not trust "
                  "(a different federation)",
    "CERTIFICATE_EXPIRED": "the peer says a certificate has expired",
    "CERTIFICATE_VERIFY_FAILED": "a certificate failed verification "
                                 "(foreign CA, expired, or wrong name)",
    "BAD_CERTIFICATE": "the peer rejected our certificate",
    "CERTIFICATE_UNKNOWN": "the peer rejected our certificate",
}


def error_from_rpc(exc: grpc.RpcError, peer: str) -> PcnodeError:
    """Turn a failed call to ``peer`` into the matching PcnodeError."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    for md in (exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else ():
        if md.key == ERROR_METADATA_KEY:
            try:
                info = json.loads(md.value)
            except (ValueError, TypeError):
                break
            cls = ERROR_FOR_STATUS.get(code.name, PcnodeError)
            return cls(f"{peer}: {info.get('message', details)}", hint=info.get("hint", ""),
                       **info.get("details", {}))
    if code == grpc.StatusCode.UNAVAILABLE:
        upper = details.upper()
        if "SOCKET CLOSED" in upper or "HANDSHAKE" in upper:
            # TCP connected, then the peer hung up during the TLS handshake: its TLS
            # layer refused our certificate before any call existed (it logs why).
            return AuthenticationError(
                f"{peer} refused our certificate during the TLS handshake "
                "(issued by another federation's CA, expired, or not yet valid)",
                hint=f"check our certificate with `pcnode status`; {peer}'s log names the reason",
            )
        for marker, meaning in _HANDSHAKE_REFUSALS.items():
            if marker in upper:
                return AuthenticationError(
                    f"TLS handshake with {peer} refused: {meaning}",
                    hint="check that both nodes belong to the same federation and their "
                         "certificates are current",
                )
        return PeerUnavailable(
            f"{peer} is unreachable: {details}",
            hint=f"is `pcnode serve` running on {peer}, and is its address right in node.toml?",
        )
    cls = ERROR_FOR_STATUS.get(code.name, PcnodeError)
    return cls(f"{peer}: {details}" if details else f"{peer}: {code.name}")
