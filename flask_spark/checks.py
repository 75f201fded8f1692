"""What ``flask spark check`` tries: an instance's settings against the platform's
endpoints, each with a verdict a developer can act on.

Nothing here signs anyone in or stores anything. The token endpoint is sent a made-up
code: a platform that refuses *the code* (``invalid_grant``) has accepted the key; one that
refuses *the client* has not.
"""

from __future__ import annotations

import dataclasses
import secrets
from urllib.parse import parse_qs, urlsplit

from .errors import IdTokenRejected, PlatformUnavailable, RateLimited, SparkError
from .grant import GrantError
from .instance import Instance

__all__ = ["Finding", "check_instance"]

#: The OAuth ``error`` values that mean the platform refused the key itself.
_KEY_REFUSED = frozenset({"invalid_client", "unauthorized_client"})


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, whether it passed, and what to do."""

    ok: bool
    what: str
    detail: str


def _mismatch(redirect_uri: str, client_id: str) -> str:
    return (
        f"the platform does not accept {redirect_uri} as a redirect URI for the key "
        f"{client_id}. Register exactly this URI with the key (scheme, host, port and path "
        "must all match), or set SPARK_REDIRECT_URI to one that is registered"
    )


def check_instance(instance: Instance, redirect_uri: str, portal: str | None) -> list[Finding]:
    """Check one Spark instance: its settings, the authorization endpoint, the token
    endpoint (with a made-up code) and the API.

    :param redirect_uri: the callback URL sign-ins of this instance send.
    :param portal: the VOW portal to try (VOW role), when the settings do not name one.
    """
    config = instance.config
    flow = "OpenID Connect" if config.auth_flow == "openid" else "OAuth 2"
    findings = [
        Finding(
            True,
            "settings",
            f"role {config.role}, {flow}, platform {config.platform_url}, "
            f"API {config.api_url}, redirect URI {redirect_uri}",
        )
    ]
    findings.append(_authorization(instance, redirect_uri, portal or config.portal))
    findings.append(_token_endpoint(instance, redirect_uri))
    findings.append(_api(instance))
    return findings


def _authorization(instance: Instance, redirect_uri: str, portal: str | None) -> Finding:
    what = "authorization endpoint"
    if instance.config.role == "vow" and not portal:
        return Finding(
            True, what, "not tried: a VOW key signs in per portal; name one with --portal"
        )
    try:
        url = instance.grants.authorization_url(
            redirect_uri, f"flask-spark-check-{secrets.token_hex(8)}", portal, "check"
        )
        reply = instance.transport.request(
            "GET", url, headers={"User-Agent": instance.config.user_agent}
        )
    except SparkError as exc:
        return Finding(False, what, f"could not be reached: {exc}")
    where = url.split("?", 1)[0]
    if reply.status in {301, 302, 303, 307, 308}:
        location = reply.headers.get("location", "")
        if location.startswith(redirect_uri):
            params = parse_qs(urlsplit(location).query)
            error = params.get("error", [""])[0]
            if error:
                described = params.get("error_description", [""])[0]
                if error in _KEY_REFUSED:
                    return Finding(
                        False, what, f"refused the key ({error}): {described}".rstrip(": ")
                    )
                return Finding(False, what, f"answered {error}: {described}".rstrip(": "))
        return Finding(True, what, f"{where} answers, sending the browser to its sign-in")
    text = reply.body[:20000].decode("utf-8", "replace")
    if "redirect_uri_mismatch" in text:
        return Finding(False, what, _mismatch(redirect_uri, instance.config.client_id))
    if 200 <= reply.status < 300:
        return Finding(True, what, f"{where} answers with its sign-in page")
    return Finding(False, what, f"{where} answered HTTP {reply.status}")


def _token_endpoint(instance: Instance, redirect_uri: str) -> Finding:
    what = "token endpoint"
    code = f"flask-spark-check-{secrets.token_hex(8)}"
    try:
        tokens, _ = instance.grants.sign_in(code, redirect_uri, "flask-spark-check")
    except GrantError as exc:
        if exc.error in _KEY_REFUSED:
            return Finding(
                False,
                what,
                f"refused the key ({exc.error}): check SPARK_CLIENT_ID and SPARK_CLIENT_SECRET",
            )
        if exc.error == "redirect_uri_mismatch":
            return Finding(False, what, _mismatch(redirect_uri, instance.config.client_id))
        return Finding(True, what, f"accepted the key (it refused the made-up code: {exc.error})")
    except RateLimited:
        return Finding(False, what, "not tried: the key's rate budget has no room now")
    except IdTokenRejected as exc:  # pragma: no cover - a made-up code gave tokens
        return Finding(False, what, f"gave tokens for a made-up code ({exc.reason})")
    except PlatformUnavailable as exc:
        return Finding(False, what, f"could not be reached: {exc}")
    instance.grants.revoke(tokens.access_token, tokens.refresh_token)
    return Finding(False, what, "gave tokens for a made-up code: this is not the platform")


def _api(instance: Instance) -> Finding:
    what = "API"
    url = f"{instance.config.api_url}/v1/system"
    try:
        reply = instance.transport.request(
            "GET",
            url,
            headers={
                "Accept": "application/json",
                "X-SparkApi-User-Agent": instance.config.user_agent,
            },
        )
        body = reply.json()
    except PlatformUnavailable as exc:
        return Finding(False, what, f"could not be reached: {exc}")
    except ValueError:
        return Finding(False, what, f"{url} answered HTTP {reply.status}, not Spark's JSON")
    envelope = body.get("D") if isinstance(body, dict) else None
    if isinstance(envelope, dict) and "Success" in envelope:
        return Finding(True, what, f"{url} answers (HTTP {reply.status} without a token)")
    return Finding(False, what, f"{url} answered HTTP {reply.status}, not Spark's envelope")
