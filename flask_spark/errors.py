"""Every error Flask-Spark raises derives from :class:`SparkError`.

The tree::

    SparkError
     ├── ConfigurationError          a SPARK_ key is missing or malformed (at init_app)
     ├── NotSignedIn                 no token for this browser session and portal
     │    └── ReauthenticationRequired   the platform refused the refresh token
     ├── SparkAPIError               the API answered with a Spark error envelope
     │    └── RateLimited            code 1550, with the platform's Retry-After
     ├── PlatformUnavailable         timeout, connection error, 5xx or an unreadable body
     └── StoreUnavailable            the session or grant store did not answer

No message ever contains a token, code, state or the client secret: they carry the
platform's error code and description, the HTTP status and the path, nothing more.

:class:`SparkWarning`, a :class:`UserWarning`, is what Flask-Spark warns with: a setting
that works but will hurt.
"""

from __future__ import annotations

from typing import Any


class SparkError(Exception):
    """Root of every Flask-Spark error."""


class SparkWarning(UserWarning):
    """A configuration that works but will hurt (such as ``SameSite=Strict``)."""


class ConfigurationError(SparkError, ValueError):
    """A ``SPARK_`` configuration key is missing or malformed.

    :param key: the name of the offending configuration key.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class NotSignedIn(SparkError):
    """The current browser session has no Spark grant for this portal.

    The default handler redirects page requests to ``/login?next=<here>`` and answers JSON
    requests with 401.
    """

    def __init__(self, message: str = "Not signed in with Flexmls") -> None:
        super().__init__(message)
        #: The name of the :class:`~flask_spark.Spark` instance whose sign-in is missing
        #: (``None``: the one serving the request); the default handler sends pages to
        #: that instance's ``/login``.
        self.instance: str | None = None


class ReauthenticationRequired(NotSignedIn):
    """The platform refused the refresh token (``invalid_grant``/``invalid_client``) or
    revoked the grant: the user has to sign in again. Handled like :class:`NotSignedIn`."""

    def __init__(self, message: str = "The Flexmls sign-in has ended; sign in again") -> None:
        super().__init__(message)


class SparkAPIError(SparkError):
    """The Spark API answered a data call with an error.

    :param status: HTTP status of the answer.
    :param code: the Spark ``Code`` from the ``D`` envelope (``None`` if absent).
    :param message: the Spark ``Message`` from the envelope.
    :param details: the whole ``D`` envelope, for ``Errors``, ``Details`` or ``SparkQLErrors``.
    :param request_id: the platform's ``X-Request-Id`` for the call (what FBS support asks
        for), when it sent one.
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id
        said = f" [request id {request_id}]" if request_id else ""
        super().__init__(f"Spark API error {code} (HTTP {status}): {message}{said}")


class RateLimited(SparkAPIError):
    """Over the key's rate limit: the platform answered code 1550 (HTTP 429, or the older
    503), or the app's shared rate budget had no room and the call was never sent.

    :param retry_after: seconds to wait before there is room, if known.
    :param from_budget: ``True`` when the shared rate budget refused the call (then
        ``status`` is 429, ``code`` is ``None`` and nothing reached the platform).
    """

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        *,
        from_budget: bool = False,
    ) -> None:
        super().__init__(status, code, message, details, request_id)
        self.retry_after = retry_after
        self.from_budget = from_budget


class IdTokenRejected(SparkError):
    """An OpenID Connect id_token failed a check at sign-in; nothing was stored.

    :param reason: which check: ``"missing"``, ``"malformed"``, ``"signature"``,
        ``"unknown_key"``, ``"issuer"``, ``"audience"``, ``"subject"``, ``"nonce"``,
        ``"expired"``, ``"issued_at"`` or ``"at_hash"``. Never the token itself.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"The id_token failed its {reason} check")


class PlatformUnavailable(SparkError):
    """The platform could not be reached or gave an unusable answer.

    Tokens are never discarded for this. The default handler answers 503.

    :param retry_after: seconds to wait before trying again, when known.
    :param request_id: the platform's ``X-Request-Id``, when it answered at all.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, request_id: str | None = None
    ) -> None:
        self.retry_after = retry_after
        self.request_id = request_id
        super().__init__(message + (f" [request id {request_id}]" if request_id else ""))


class StoreUnavailable(SparkError):
    """The session store or the grant store did not answer (or a refresh lease could not
    be had in time). The default handler answers 503; no refresh ever happens without the
    lease."""
