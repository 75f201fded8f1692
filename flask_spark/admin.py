"""The stored grants of an app, for operators: list them, revoke them.

Reached as :attr:`flask_spark.Spark.grants` and through ``flask spark grants``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .account import SparkAccount
from .config import DEFAULT_INSTANCE
from .instance import Instance


@dataclass(frozen=True)
class GrantInfo:
    """One stored grant, without its tokens."""

    account_id: str
    scope: str
    name: str | None
    #: Unix time the access token is taken as expired.
    expires_at: float
    #: Unix time of the sign-in that made the grant.
    created_at: float
    #: Unix time of its latest use through a browser (to the minute); the sign-in's at first.
    last_used_at: float
    #: The platform refused its refresh token. Only the app-wide grant of single-session
    #: keys is kept so (until a new pair is configured); a user's grant is deleted.
    ended: bool
    #: The name of the :class:`~flask_spark.Spark` instance the grant belongs to.
    instance: str = DEFAULT_INSTANCE


class GrantAdmin:
    """The grants of one instance's key (and role) in its grant store."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    def __repr__(self) -> str:
        return f"<GrantAdmin {self._instance.config.client_id!r}>"

    def _mine(self, scope: str) -> bool:
        """Whether a grant of ``scope`` is of this instance's role (two instances may
        share a key)."""
        role = self._instance.config.role
        return scope.startswith("vow/") if role == "vow" else scope == role

    def list(self) -> list[GrantInfo]:
        """Every grant of this instance's key and role, the most recently used first."""
        tokens = self._instance.tokens
        found = [
            GrantInfo(
                account_id=grant.key.account_id,
                scope=grant.key.scope,
                name=SparkAccount.from_grant(grant).name,
                expires_at=grant.expires_at,
                created_at=grant.created_at,
                last_used_at=grant.last_used_at,
                ended=grant.ended,
                instance=self._instance.name,
            )
            for grant in tokens.stored_grants()
            if grant.key != tokens.app_key and self._mine(grant.key.scope)
        ]
        found.sort(key=lambda info: (-info.last_used_at, info.account_id, info.scope))
        return found

    def revoke(self, account_id: str, scope: str | None = None) -> int:
        """End ``account_id``'s grants (in ``scope``, or all of them): every browser of
        the account is signed out, and each grant is revoked at the platform (best effort).

        :returns: how many grants were ended.
        """
        ended = 0
        for info in self.list():
            if info.account_id == account_id and scope in (None, info.scope):
                grant, _ = self._instance.tokens.end(
                    self._instance.tokens.key(account_id, info.scope)
                )
                ended += grant is not None
        return ended
