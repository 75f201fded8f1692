"""The ``SPARK_`` configuration keys, their defaults, and their validation.

Everything is read and checked once, in :meth:`flask_spark.Spark.init_app`; a bad value raises
:class:`~flask_spark.errors.ConfigurationError` naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .rate_budget import PUBLISHED_LIMITS, PUBLISHED_WINDOW
from .token_format import is_token

Role = Literal["idx", "vow", "private"]
AuthFlow = Literal["oauth2", "openid"]
TokenScheme = Literal["OAuth", "Bearer"]

#: Where the authorization endpoints live.
DEFAULT_PLATFORM_URL = "https://sparkplatform.com"
#: Where the grant endpoint and the data API live.
DEFAULT_API_URL = "https://sparkapi.com"
#: Where bulk copies of the data come from (``spark_api.replicate``).
DEFAULT_REPLICATION_URL = "https://replication.sparkapi.com"
#: Sent as ``X-SparkApi-User-Agent`` unless ``SPARK_USER_AGENT`` is set.
DEFAULT_USER_AGENT = "Flask-Spark"
#: Seconds one call to the platform may take as a whole, connect to last byte.
DEFAULT_TIMEOUT = 10.0
#: The longest URL a call is sent as; longer ``GET`` calls go as ``POST`` with
#: ``X-HTTP-Method-Override: GET`` and their parameters in the body.
DEFAULT_MAX_URL_LENGTH = 2048
#: The largest answer body of a data call that is read (32 MiB); larger ones fail.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: The scopes an OpenID Connect sign-in asks for.
DEFAULT_OPENID_SCOPE = "openid profile email"
#: Seconds of clock difference with the platform an id_token's times may show.
DEFAULT_OPENID_LEEWAY = 30.0
#: Refresh this many seconds before the access token's recorded expiry.
DEFAULT_TOKEN_LEEWAY = 60
#: Seconds a pending sign-in (its ``state``) stays valid.
DEFAULT_STATE_LIFETIME = 600
#: Extra attempts for idempotent calls answered 429/503 or code 1550.
DEFAULT_RETRIES = 2
#: Longest ``Retry-After`` honoured by waiting; longer ones raise ``RateLimited`` at once.
DEFAULT_MAX_RETRY_WAIT = 5.0
#: Keep-alive connections kept per platform host and process.
DEFAULT_POOL_SIZE = 16
#: Seconds a process may reuse a token record it read, before reading the store again.
DEFAULT_TOKEN_CACHE_SECONDS = 5.0
#: The refresh lease lasts ``2 x SPARK_TIMEOUT`` plus this many seconds unless set.
REFRESH_LEASE_MARGIN = 5.0

_ROLES: tuple[Role, ...] = ("idx", "vow", "private")
_FLOWS: tuple[AuthFlow, ...] = ("oauth2", "openid")
_SCHEMES: tuple[TokenScheme, ...] = ("OAuth", "Bearer")
_PORTAL_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class SparkConfig:
    """The validated configuration of one app, kept in ``app.extensions["spark"]``."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str | None
    role: Role
    portal: str | None
    #: ``"oauth2"`` (the platform's OAuth 2 endpoints) or ``"openid"`` (OpenID Connect).
    auth_flow: AuthFlow
    openid_scope: str
    openid_leeway: float
    openid_discovery_url: str
    #: How OAuth 2 and OpenID access tokens are sent: ``Authorization: <scheme> <token>``.
    token_scheme: TokenScheme
    platform_url: str
    api_url: str
    replication_url: str
    user_agent: str
    login_redirect: str
    allow_http_loopback: bool
    timeout: float
    ca_certs: str | None
    token_leeway: float
    state_lifetime: float
    retries: int
    max_retry_wait: float
    pool_size: int
    max_response_bytes: int
    max_url_length: int
    token_cache_seconds: float
    refresh_lease_seconds: float
    #: Calls the shared rate budget allows per :attr:`rate_window`; ``None``: no budget.
    rate_limit: int | None
    rate_window: float
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    one_portal_per_session: bool
    logout_ends_grant: bool
    grant_store: str | None = field(repr=False)
    #: The secrets tokens are sealed with at rest (the first seals); empty: SECRET_KEY's.
    token_keys: tuple[str | bytes, ...] = field(default=(), repr=False)

    @property
    def grant_url(self) -> str:
        """The token endpoint: code exchange and refresh."""
        return f"{self.api_url}/v1/oauth2/grant"

    @property
    def has_app_token(self) -> bool:
        """Whether an app-wide token is configured: single-session keys (an access and a
        refresh token) or a personal access token (an access token alone)."""
        return self.access_token is not None

    @property
    def personal_token(self) -> bool:
        """Whether the app-wide token is a personal access token: no refresh token, never
        expires, sent as ``Bearer``."""
        return self.access_token is not None and self.refresh_token is None


def default_scope(config: SparkConfig) -> str:
    """The scope of the configured role: ``idx``, ``private`` or ``vow/<SPARK_PORTAL>``.

    :raises ValueError: a VOW app without ``SPARK_PORTAL``.
    """
    if config.role != "vow":
        return config.role
    if config.portal is None:
        raise ValueError('name the scope ("vow/<portal>"): SPARK_PORTAL is not set')
    return f"vow/{config.portal}"


def normalize_portal(name: str, key: str = "SPARK_PORTAL") -> str:
    """Validate a VOW portal name and return it lowercased, as the platform's URL wants it.

    :raises ConfigurationError: the name holds anything but letters, digits, ``_`` and ``-``.
    """
    if not isinstance(name, str) or not _PORTAL_RE.fullmatch(name):
        raise ConfigurationError(
            key, "a portal name is 1-64 letters, digits, '_' or '-' (no slashes, dots or spaces)"
        )
    return name.lower()


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a host name or address, not a URL; an IPv6 address may be in
    brackets) names this machine."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(key: str, value: Any, allow_http_loopback: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(key, "must be a URL such as https://sparkapi.com")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigurationError(key, "is not a valid URL") from exc
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigurationError(key, "must not contain user information ('@')")
    if not host:
        raise ConfigurationError(key, "has no host")
    if parts.query or parts.fragment:
        raise ConfigurationError(key, "must not have a query or fragment")
    problem = scheme_problem(parts.scheme, host, allow_http_loopback)
    if problem is not None:
        raise ConfigurationError(key, problem)
    return value.rstrip("/")


def scheme_problem(scheme: str, host: str, allow_http_loopback: bool) -> str | None:
    """Why a platform URL of ``scheme`` on ``host`` may not be used, or ``None``: https
    only, http also on loopback hosts with ``SPARK_ALLOW_HTTP_LOOPBACK``."""
    if scheme == "http" and allow_http_loopback:
        return None if is_loopback_host(host) else "http is allowed for loopback hosts only"
    if scheme != "https":
        return "must use https (SPARK_ALLOW_HTTP_LOOPBACK allows http on loopback hosts)"
    return None


def _str(config: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = config.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(key, "must be a non-empty string")
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigurationError(key, "must not contain line breaks or NUL")
    return value


def _required_str(config: Mapping[str, Any], key: str, default: str) -> str:
    """:func:`_str` of a key that has a default."""
    value = _str(config, key, default)
    assert value is not None
    return value


_Choice = TypeVar("_Choice", bound=str)


def _choice(config: Mapping[str, Any], key: str, choices: tuple[_Choice, ...]) -> _Choice:
    """One of ``choices`` (the first by default)."""
    value = config.get(key, choices[0])
    if value not in choices:
        quoted = [repr(choice) for choice in choices]
        if len(quoted) == 2:
            raise ConfigurationError(key, f"must be {quoted[0]} or {quoted[1]}")
        raise ConfigurationError(key, f"must be one of {', '.join(quoted)}")
    return cast(_Choice, value)


def _number(config: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigurationError(key, f"must be a number >= {minimum}")
    return float(value)


def _int(config: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(key, f"must be a whole number >= {minimum}")
    return value


def _bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(key, "must be True or False")
    return value


#: The name of the default :class:`~flask_spark.Spark` instance: its blueprint is
#: ``spark``, its keys ``SPARK_...``.
DEFAULT_INSTANCE = "spark"

#: What a named instance takes from the plain ``SPARK_`` key when its own prefixed key is
#: unset: where the platform is and how it is reached, where grants live and how they are
#: sealed. Everything else (the key, its role, its redirect URI...) is the instance's own.
SHARED_KEYS = frozenset(
    {
        "SPARK_PLATFORM_URL",
        "SPARK_API_URL",
        "SPARK_REPLICATION_URL",
        "SPARK_CA_CERTS",
        "SPARK_ALLOW_HTTP_LOOPBACK",
        "SPARK_USER_AGENT",
        "SPARK_TIMEOUT",
        "SPARK_POOL_SIZE",
        "SPARK_GRANT_STORE",
        "SPARK_TOKEN_KEYS",
    }
)

_KEY_RE = re.compile(r"\bSPARK_[A-Z0-9_]+")


class PrefixedConfig(Mapping[str, Any]):
    """A Flask config seen through an instance's ``config_prefix``: with the prefix
    ``SPARK_VOW_``, ``view['SPARK_ROLE']`` is ``config['SPARK_VOW_ROLE']``; unset, it falls
    back to ``config['SPARK_ROLE']`` for the :data:`SHARED_KEYS` only."""

    def __init__(self, config: Mapping[str, Any], prefix: str = "SPARK_") -> None:
        self._config = config
        self.prefix = prefix

    def source_key(self, key: str) -> str:
        """The key of the app's config that ``key`` (a ``SPARK_`` name) is read from."""
        if self.prefix == "SPARK_" or not key.startswith("SPARK_"):
            return key
        own = self.prefix + key.removeprefix("SPARK_")
        if own not in self._config and key in SHARED_KEYS and key in self._config:
            return key
        return own

    def __getitem__(self, key: str) -> Any:
        return self._config[self.source_key(key)]

    def __iter__(self) -> Iterator[str]:
        for key in self._config:
            if key.startswith(self.prefix):
                yield "SPARK_" + key.removeprefix(self.prefix)
            elif key in SHARED_KEYS and self.source_key(key) == key:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def rename(self, error: ConfigurationError) -> ConfigurationError:
        """``error`` naming the keys of the app's config it is about."""
        if self.prefix == "SPARK_":
            return error
        problem = _KEY_RE.sub(lambda m: self.source_key(m.group(0)), error.problem)
        return ConfigurationError(self.source_key(error.key), problem)


def load_config(
    config: Mapping[str, Any], *, has_portal_loader: bool = False, prefix: str = "SPARK_"
) -> SparkConfig:
    """Read and validate every ``SPARK_`` key of a Flask config.

    :param has_portal_loader: a portal loader chooses the VOW portal per request, so
        ``SPARK_PORTAL`` may be left unset with ``SPARK_ROLE="vow"``.
    :param prefix: an instance's ``config_prefix``: its keys are read as
        ``<prefix>CLIENT_ID`` and so on (see :class:`PrefixedConfig`).
    :raises ConfigurationError: naming the first missing or malformed key.
    """
    view = PrefixedConfig(config, prefix)
    try:
        return _load_config(view, has_portal_loader)
    except ConfigurationError as exc:
        raise view.rename(exc) from None


def _load_config(config: Mapping[str, Any], has_portal_loader: bool) -> SparkConfig:
    # Read in this order, which says which key a config with several faults is told about.
    client_id, client_secret = _credentials(config)
    role, portal = _role_and_portal(config, has_portal_loader)
    allow_http = _bool(config, "SPARK_ALLOW_HTTP_LOOPBACK", False)
    platform_url, api_url, replication_url = (
        _check_base_url(key, config.get(key, default), allow_http)
        for key, default in (
            ("SPARK_PLATFORM_URL", DEFAULT_PLATFORM_URL),
            ("SPARK_API_URL", DEFAULT_API_URL),
            ("SPARK_REPLICATION_URL", DEFAULT_REPLICATION_URL),
        )
    )
    redirect_uri = _redirect_uri(config)
    login_redirect = _required_str(config, "SPARK_LOGIN_REDIRECT", "/")
    ca_certs = _str(config, "SPARK_CA_CERTS")
    access_token, refresh_token = _app_tokens(config)
    auth_flow = _flow(config, role)
    token_scheme = _choice(config, "SPARK_TOKEN_SCHEME", _SCHEMES)
    openid_scope = _required_str(config, "SPARK_OPENID_SCOPE", DEFAULT_OPENID_SCOPE)
    if "openid" not in openid_scope.split():
        raise ConfigurationError("SPARK_OPENID_SCOPE", "must include 'openid'")
    openid_discovery_url = _check_base_url(
        "SPARK_OPENID_DISCOVERY_URL",
        config.get(
            "SPARK_OPENID_DISCOVERY_URL", f"{platform_url}/.well-known/openid-configuration"
        ),
        allow_http,
    )
    user_agent = _required_str(config, "SPARK_USER_AGENT", DEFAULT_USER_AGENT)
    timeout = _number(config, "SPARK_TIMEOUT", DEFAULT_TIMEOUT, 0.01)
    return SparkConfig(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
        role=role,
        portal=portal,
        auth_flow=auth_flow,
        openid_scope=openid_scope,
        openid_leeway=_number(config, "SPARK_OPENID_LEEWAY", DEFAULT_OPENID_LEEWAY, 0),
        openid_discovery_url=openid_discovery_url,
        token_scheme=token_scheme,
        platform_url=platform_url,
        api_url=api_url,
        replication_url=replication_url,
        user_agent=user_agent,
        login_redirect=login_redirect,
        allow_http_loopback=allow_http,
        timeout=timeout,
        ca_certs=ca_certs,
        token_leeway=_number(config, "SPARK_TOKEN_LEEWAY", DEFAULT_TOKEN_LEEWAY, 0),
        state_lifetime=_number(config, "SPARK_STATE_LIFETIME", DEFAULT_STATE_LIFETIME, 1),
        retries=_int(config, "SPARK_RETRIES", DEFAULT_RETRIES, 0),
        max_retry_wait=_number(config, "SPARK_MAX_RETRY_WAIT", DEFAULT_MAX_RETRY_WAIT, 0),
        pool_size=_int(config, "SPARK_POOL_SIZE", DEFAULT_POOL_SIZE, 1),
        max_response_bytes=_int(
            config, "SPARK_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, 1024
        ),
        max_url_length=_int(config, "SPARK_MAX_URL_LENGTH", DEFAULT_MAX_URL_LENGTH, 256),
        token_cache_seconds=_number(
            config, "SPARK_TOKEN_CACHE_SECONDS", DEFAULT_TOKEN_CACHE_SECONDS, 0
        ),
        refresh_lease_seconds=_number(
            config, "SPARK_REFRESH_LEASE_SECONDS", timeout * 2 + REFRESH_LEASE_MARGIN, 0.1
        ),
        rate_limit=_rate_limit(config, role),
        rate_window=_number(config, "SPARK_RATE_WINDOW", PUBLISHED_WINDOW, 1),
        access_token=access_token,
        refresh_token=refresh_token,
        one_portal_per_session=_bool(config, "SPARK_ONE_PORTAL_PER_SESSION", False),
        logout_ends_grant=_bool(config, "SPARK_LOGOUT_ENDS_GRANT", True),
        grant_store=_grant_store(config),
        token_keys=_token_keys(config),
    )


def _credentials(config: Mapping[str, Any]) -> tuple[str, str]:
    """``SPARK_CLIENT_ID`` and ``SPARK_CLIENT_SECRET``, both required."""
    client_id = _str(config, "SPARK_CLIENT_ID")
    if client_id is None:
        raise ConfigurationError("SPARK_CLIENT_ID", "is required (the key's OAuth client id)")
    client_secret = _str(config, "SPARK_CLIENT_SECRET")
    if client_secret is None:
        raise ConfigurationError("SPARK_CLIENT_SECRET", "is required (the key's OAuth secret)")
    return client_id, client_secret


def _role_and_portal(
    config: Mapping[str, Any], has_portal_loader: bool
) -> tuple[Role, str | None]:
    """``SPARK_ROLE``, and ``SPARK_PORTAL`` lowercased (required for VOW without a portal
    loader)."""
    role = _choice(config, "SPARK_ROLE", _ROLES)
    portal_value = config.get("SPARK_PORTAL")
    portal = None if portal_value is None else normalize_portal(portal_value)
    if role == "vow" and portal is None and not has_portal_loader:
        raise ConfigurationError(
            "SPARK_PORTAL", "is required with SPARK_ROLE='vow' (or register a portal_loader)"
        )
    return role, portal


def _redirect_uri(config: Mapping[str, Any]) -> str | None:
    """``SPARK_REDIRECT_URI``: an absolute http(s) URL without a fragment, or unset."""
    redirect_uri = _str(config, "SPARK_REDIRECT_URI")
    if redirect_uri is not None:
        parts = urlsplit(redirect_uri)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.fragment:
            raise ConfigurationError(
                "SPARK_REDIRECT_URI", "must be an absolute http(s) URL without a fragment"
            )
    return redirect_uri


def _app_tokens(config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``SPARK_ACCESS_TOKEN`` and ``SPARK_REFRESH_TOKEN``: both (single-session keys), the
    access token alone (a personal access token), or neither."""
    access_token = _str(config, "SPARK_ACCESS_TOKEN")
    refresh_token = _str(config, "SPARK_REFRESH_TOKEN")
    for name, value in (
        ("SPARK_ACCESS_TOKEN", access_token),
        ("SPARK_REFRESH_TOKEN", refresh_token),
    ):
        if value is not None and not is_token(value):
            raise ConfigurationError(
                name, "must be a token as the platform issues it (letters, digits, -._~+/)"
            )
    if refresh_token is not None and access_token is None:
        raise ConfigurationError(
            "SPARK_ACCESS_TOKEN",
            "single-session keys need both SPARK_ACCESS_TOKEN and SPARK_REFRESH_TOKEN "
            "(an access token alone is a personal access token)",
        )
    return access_token, refresh_token


def _flow(config: Mapping[str, Any], role: Role) -> AuthFlow:
    """``SPARK_AUTH_FLOW``: OAuth 2, or OpenID Connect (not for VOW)."""
    auth_flow = _choice(config, "SPARK_AUTH_FLOW", _FLOWS)
    if auth_flow == "openid" and role == "vow":
        raise ConfigurationError(
            "SPARK_AUTH_FLOW",
            "VOW portals sign in with OAuth 2 only: the platform documents no OpenID "
            "Connect sign-in for VOW keys; use 'oauth2' (the default)",
        )
    return auth_flow


def _rate_limit(config: Mapping[str, Any], role: Role) -> int | None:
    """``SPARK_RATE_LIMIT``: calls per window, ``None`` for no budget; unset, the
    platform's published limit for the role."""
    if "SPARK_RATE_LIMIT" not in config:
        return PUBLISHED_LIMITS[role]
    if config["SPARK_RATE_LIMIT"] is None:
        return None
    return _int(config, "SPARK_RATE_LIMIT", 0, 1)


#: The shortest secret accepted in ``SPARK_TOKEN_KEYS``.
MIN_TOKEN_KEY_LENGTH = 32


def _token_keys(config: Mapping[str, Any]) -> tuple[str | bytes, ...]:
    """``SPARK_TOKEN_KEYS``: a list of secrets (or one), each at least 32 long."""
    value = config.get("SPARK_TOKEN_KEYS")
    if value is None:
        return ()
    keys = [value] if isinstance(value, str | bytes) else value
    if not isinstance(keys, list | tuple) or not keys:
        raise ConfigurationError("SPARK_TOKEN_KEYS", "must be a list of secrets, newest first")
    for key in keys:
        if not isinstance(key, str | bytes) or len(key) < MIN_TOKEN_KEY_LENGTH:
            raise ConfigurationError(
                "SPARK_TOKEN_KEYS",
                f"each key must be a string of at least {MIN_TOKEN_KEY_LENGTH} characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            )
    return tuple(keys)


def _grant_store(config: Mapping[str, Any]) -> str | None:
    """``SPARK_GRANT_STORE``: a URL, or unset (the default store)."""
    value = config.get("SPARK_GRANT_STORE")
    if value is None:
        return None
    if not isinstance(value, str) or "://" not in value:
        raise ConfigurationError(
            "SPARK_GRANT_STORE",
            "must be a store URL such as sqlite:///grants.sqlite3 or redis://host",
        )
    return value
