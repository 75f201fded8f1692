"""The signed-in Spark account, as read from ``/my/account`` at sign-in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .stores.base import Grant


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _primary_email(account: dict[str, Any]) -> str | None:
    emails = account.get("Emails")
    if not isinstance(emails, list):
        return _text(account.get("Email"))
    usable = [e for e in emails if isinstance(e, dict) and _text(e.get("Address"))]
    primary = [e for e in usable if e.get("Primary") is True]
    chosen = primary or usable
    return _text(chosen[0].get("Address")) if chosen else None


@dataclass(frozen=True)
class SparkAccount:
    """Who signed in: the Spark account of the grant, with no API call.

    :param id: the account's ``Id`` (a 26-digit string on the platform).
    :param scope: ``"idx"``, ``"private"`` or ``"vow/<portal>"``.
    :param raw: the whole ``/my/account`` result stored at sign-in.
    """

    id: str
    scope: str
    name: str | None
    email: str | None
    user_type: str | None
    office_id: str | None
    mls_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_grant(cls, grant: Grant) -> SparkAccount:
        """The account summary a grant holds."""
        raw = grant.account
        return cls(
            id=grant.key.account_id,
            scope=grant.key.scope,
            name=_text(raw.get("Name")),
            email=_primary_email(raw),
            user_type=_text(raw.get("UserType")),
            office_id=_text(raw.get("OfficeId")),
            mls_id=_text(raw.get("MlsId")),
            raw=raw,
        )
