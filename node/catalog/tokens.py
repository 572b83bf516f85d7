"""HTTP API bearer tokens with a role: operator, provider, partner or regulator.

A token is ``pcn_<id>_<secret>`` where the secret is 32 random bytes
(base64url). Only SHA-256 of the whole token is stored. A plain hash (rather
than a slow password hash such as scrypt) is enough here because the token is
machine-generated with 256 bits of entropy: no dictionary or brute-force
search over such a space is feasible, so stretching would only slow down every
request without adding security. The token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from node.catalog import store as st
from pcnode.errors import AuthenticationError, InvalidInput, NotFound

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog

#: The roles of HTTP API users.
ROLES = ("operator", "provider", "partner", "regulator")
TOKEN_PREFIX = "pcn_"  # noqa: S105 - a fixed prefix, not a secret


@dataclass(frozen=True)
class TokenInfo:
    """Who a verified token belongs to."""

    id: str
    name: str
    role: str

    @property
    def user(self) -> str:
        """The acting user recorded in the ledger for requests with this token."""
        return f"{self.name} ({self.role})"


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token text (see module docstring for why this suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokensMixin:
    """Token operations of :class:`node.catalog.Catalog`."""

    def create_token(self: Catalog, role: str, *, user: str, name: str = ""
                     ) -> tuple[TokenInfo, str]:
        """Create a token for ``role``; return its info and the secret (shown once)."""
        if role not in ROLES:
            raise InvalidInput(f"invalid role {role!r}", hint=f"use one of {', '.join(ROLES)}")
        token_id = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        name = (name or f"{role}-{token_id}").strip()[:200]
        with self.store.write() as conn:
            conn.execute(insert(st.tokens).values(
                id=token_id, name=name, role=role, token_hash=hash_token(secret),
                created_at=st.utcnow(), created_by=user))
        return TokenInfo(token_id, name, role), secret

    def verify_token(self: Catalog, token: str) -> TokenInfo:
        """The owner of ``token``; AuthenticationError if unknown or revoked."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            raise AuthenticationError("malformed bearer token",
                                      hint="create one with: pcnode token create HOME --role ROLE")
        digest = hash_token(token)
        with self.store.read() as conn:
            row = conn.execute(select(st.tokens).where(st.tokens.c.token_hash == digest)
                               ).mappings().first()
        # The lookup is by hash, so timing reveals nothing about the secret; compare anyway.
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            raise AuthenticationError("unknown bearer token",
                                      hint="create one with: pcnode token create HOME --role ROLE")
        if row["revoked_at"] is not None:
            raise AuthenticationError("this bearer token was revoked")
        return TokenInfo(row["id"], row["name"], row["role"])

    def list_tokens(self: Catalog) -> list[dict[str, Any]]:
        """Token ids, names, roles and dates (never secrets or hashes)."""
        with self.store.read() as conn:
            rows = conn.execute(select(st.tokens).order_by(st.tokens.c.created_at)).mappings().all()
        return [{"id": r["id"], "name": r["name"], "role": r["role"],
                 "created_at": st.iso(r["created_at"]), "created_by": r["created_by"],
                 "revoked_at": st.iso(r["revoked_at"])} for r in rows]

    def revoke_token(self: Catalog, token_id: str, *, user: str) -> None:
        """Revoke token ``token_id``; later requests with it get 401."""
        with self.store.write() as conn:
            result = conn.execute(update(st.tokens).where(
                st.tokens.c.id == token_id, st.tokens.c.revoked_at.is_(None)
            ).values(revoked_at=st.utcnow()))
            if result.rowcount != 1:
                raise NotFound(f"no active token {token_id!r}",
                               hint="list tokens with: pcnode token list HOME")
