"""The blueprint of a :class:`~flask_spark.Spark` instance (``spark`` for the default one):
``GET /login``, ``GET /callback``, ``POST /logout``. Each view serves the instance its
blueprint is named after."""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, has_request_context, redirect, request, session, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from .context import current_grant, current_scope, forget_current
from .errors import (
    IdTokenRejected,
    PlatformUnavailable,
    RateLimited,
    StoreUnavailable,
)
from .grant import GrantError
from .instance import Instance
from .pages import clean_description, error_page, private, uncached
from .redirects import safe_next
from .registry import serving_instance
from .sessions import (
    browser_data,
    owned_here,
    require_session_store,
    store_errors,
)
from .signals import logged_out, login_failed, token_obtained
from .stores.base import GrantKey, Tokens

log = logging.getLogger("flask_spark")

_CODE_RE = re.compile(r"[\x21-\x7e]{1,512}")
_CALLBACK_PARAMS = ("state", "code", "error", "error_description")
_MAX_PARAM = 4096
#: What a ``state`` this app issued looks like.
STATE_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")


def new_state() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _pending_name(instance: Instance, oauth_state: str, sid: str) -> str:
    """Where a pending sign-in is filed: its state and the session that started it (and
    the instance, but for the default one)."""
    return instance.slot(f"{oauth_state}\x00{sid}")


def make_blueprint(name: str) -> Blueprint:
    """A fresh blueprint for the instance ``name`` (one per instance and app)."""
    bp = Blueprint(name, __name__, template_folder="templates")
    bp.add_url_rule("/login", "login", login, methods=["GET"])
    bp.add_url_rule("/callback", "callback", callback, methods=["GET"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
    bp.url_defaults(_keep_prefix_values)
    return bp


def _keep_prefix_values(endpoint: str, values: dict[str, Any]) -> None:
    """Fill the blueprint's URL prefix variables (``url_prefix="/<portal>"``) from the
    current request, so ``url_for("spark.login")`` stays inside the current portal."""
    if not has_request_context() or not request.view_args:
        return
    for rule in current_app.url_map.iter_rules(endpoint):
        for name in rule.arguments:
            if name not in values and name in request.view_args:
                values[name] = request.view_args[name]
        return


def _redirect_uri(instance: Instance) -> str:
    return instance.config.redirect_uri or url_for(f"{instance.name}.callback", _external=True)


def _landing(instance: Instance) -> str:
    """``SPARK_LOGIN_REDIRECT``; a path is taken within the app's mount point."""
    target = instance.config.login_redirect
    if safe_next(target) is not None:
        return request.script_root + target
    return target


def login(**_prefix_values: Any) -> Response:
    """Start a sign-in: remember a fresh state in the grant store, bound to this browser
    session, then redirect to the platform."""
    require_session_store()
    instance = serving_instance()
    scope, portal = current_scope(instance)
    redirect_uri = _redirect_uri(instance)
    oauth_state = new_state()
    nonce = new_state() if instance.config.auth_flow == "openid" else None
    try:
        # OpenID Connect: the discovered endpoint (read before anything is filed).
        target = instance.grants.authorization_url(redirect_uri, oauth_state, portal, nonce)
    except PlatformUnavailable:
        return _failed("platform_unavailable", 502)
    expires_at = time.time() + instance.config.state_lifetime
    # Also gives a new session content, so Flask-Session keeps it and sends its cookie.
    data = browser_data()
    data.logins.append(expires_at)
    data.save()
    # Filed under the state and this session together: another browser presenting the
    # state finds nothing, and cannot use it up either.
    instance.tokens.put_pending(
        _pending_name(instance, oauth_state, session.sid),  # type: ignore[attr-defined]
        {
            "next": safe_next(args.get("next")) if (args := _args()) is not None else None,
            "scope": scope,
            "portal": portal,
            "redirect_uri": redirect_uri,
            "expires_at": expires_at,
            "nonce": nonce,
        },
    )
    return uncached(redirect(target, 302))


def _failed(reason: str, status: int, **context: Any) -> Response:
    """Tell receivers of ``login_failed``; the first Response one returns wins."""
    error = context.get("error")
    description = context.get("description")
    log.info("Flexmls sign-in failed: %s", reason)
    for _receiver, value in login_failed.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        instance=serving_instance().name,
        reason=reason,
        error=error,
        description=description,
    ):
        if isinstance(value, Response):
            return private(value)
    return error_page(reason, status, **context)


def _args() -> MultiDict[str, str] | None:
    """The query arguments, or ``None`` when the raw query is not UTF-8."""
    try:
        return request.args
    except UnicodeDecodeError:
        return None


def _single_params() -> dict[str, str] | None:
    """The callback's parameters, or ``None`` when the query is not UTF-8 or any of them is
    repeated, too long or holds NUL."""
    args = _args()
    if args is None:
        return None
    values: dict[str, str] = {}
    for name in _CALLBACK_PARAMS:
        found = args.getlist(name)
        if len(found) > 1:
            return None
        if found:
            value = found[0]
            if len(value) > _MAX_PARAM or "\x00" in value or "\ufffd" in value:
                return None
            values[name] = value
    return values


def _pending_for(instance: Instance, oauth_state: str) -> tuple[str, dict[str, Any] | None]:
    """Take the pending sign-in of ``oauth_state`` if this browser session started it with
    this instance: ``("ok", record)``, ``("expired", record)`` or ``("unknown", None)``."""
    sid = getattr(session, "sid", None)
    if not STATE_RE.fullmatch(oauth_state) or not sid:
        return "unknown", None
    record = None
    # Under this session's id, or one it had when a sign-in in another tab rotated it.
    for candidate in [sid, *(item[0] for item in reversed(browser_data().previous))]:
        record = instance.tokens.take_pending(_pending_name(instance, oauth_state, candidate))
        if record is not None:
            break
    if record is None:
        return "unknown", None
    if not float(record.get("expires_at", 0)) > time.time():
        return "expired", record
    return "ok", record


def callback(**_prefix_values: Any) -> Response:
    """Finish a sign-in: check the state, exchange the code, learn whose grant it is, keep
    it, and bind this browser session to it."""
    require_session_store()
    instance = serving_instance()
    params = _single_params()
    if params is None:
        return _failed("bad_request", 400)
    oauth_state = params.get("state", "")
    outcome, record = _pending_for(instance, oauth_state) if oauth_state else ("unknown", None)
    retry_url = url_for(f"{instance.name}.login", next=record["next"]) if record else None
    error = params.get("error")
    if error is not None:
        return _platform_refused(error, params.get("error_description"), record, retry_url)
    if outcome == "expired":
        return _failed("expired_state", 400, retry_url=retry_url)
    if record is None:
        if current_app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            return _failed("no_cookie", 400)
        return _unknown_state(instance)
    code = params.get("code", "")
    if not _CODE_RE.fullmatch(code):
        return _failed("bad_request", 400)
    exchanged = _exchange(instance, code, record, retry_url)
    if isinstance(exchanged, Response):
        return exchanged
    return _keep_sign_in(instance, *exchanged, record, retry_url)


def _platform_refused(
    error: str, description: str | None, record: dict[str, Any] | None, retry_url: str | None
) -> Response:
    """The platform sent the browser back with an ``error``: the user cancelled, or it
    could not sign them in."""
    cleaned = clean_description(error)
    # The platform's words are shown only for a sign-in this browser started: anyone can
    # link to /callback with an error_description of their own.
    shown = clean_description(description) if record else None
    if cleaned == "access_denied":
        return _failed("cancelled", 403, error=cleaned, description=shown, retry_url=retry_url)
    return _failed("platform_error", 400, error=cleaned, description=shown, retry_url=retry_url)


def _exchange(
    instance: Instance, code: str, record: dict[str, Any], retry_url: str | None
) -> tuple[Tokens, dict[str, Any]] | Response:
    """Exchange ``code`` at the platform: the tokens and the account they are of, or the
    page that says why not."""
    try:
        return instance.grants.sign_in(code, record["redirect_uri"], record.get("nonce"))
    except GrantError as exc:
        return _failed(
            "exchange_failed",
            400,
            error=exc.error,
            description=clean_description(exc.description),
            retry_url=retry_url,
        )
    except RateLimited as exc:
        response = _failed("busy", 503, retry_url=retry_url)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return response
    except IdTokenRejected as exc:
        return _failed("id_token_invalid", 502, check=exc.reason, retry_url=retry_url)
    except PlatformUnavailable:
        return _failed("platform_unavailable", 502, retry_url=retry_url)


def _keep_sign_in(
    instance: Instance,
    tokens: Tokens,
    account: dict[str, Any],
    record: dict[str, Any],
    retry_url: str | None,
) -> Response:
    """Store the exchanged grant, bind this browser to it and go on to the app; a grant
    that could not be stored is given back to the platform."""
    key = instance.tokens.key(account["Id"], record["scope"])
    failures: tuple[type[BaseException], ...] = (StoreUnavailable, *store_errors())
    try:
        instance.tokens.sign_in(key, tokens, record["redirect_uri"], account)
    except failures:
        # The code is spent and nothing holds the grant: give it back.
        instance.grants.revoke(tokens.access_token, tokens.refresh_token)
        return _failed("store_unavailable", 503, retry_url=retry_url)
    try:
        _bind_session(instance, key, record)
    except failures:
        # The grant is stored (other browsers of the account may share it); this browser
        # is just not bound to it yet.
        return _failed("store_unavailable", 503, retry_url=retry_url)
    forget_current()
    token_obtained.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        instance=instance.name,
        scope=record["scope"],
        portal=record["portal"],
        account_id=key.account_id,
    )
    return private(redirect(record["next"] or _landing(instance), 303))


def _bind_session(instance: Instance, key: GrantKey, record: dict[str, Any]) -> None:
    """Rotate the session id (retiring the old one) and bind the new one to ``key``. What
    the session was bound to before in this scope (another account), or in any other
    scope of this instance with ``SPARK_ONE_PORTAL_PER_SESSION``, is signed out of."""
    data = browser_data()
    slot = instance.slot(key.scope)
    replaced = [data.bindings.pop(slot)] if slot in data.bindings else []
    if instance.config.one_portal_per_session:
        others = [name for name in data.bindings if instance.owns(name)]
        replaced += [data.bindings.pop(name) for name in others]
    replaced_grants = [instance.tokens.resolve(b, instance.session_ttl) for b in replaced]
    old_sid: str = session.sid  # type: ignore[attr-defined]
    instance.tokens.retire_session(old_sid, instance.session_ttl)
    owned_here(old_sid)
    data.bindings[slot] = instance.tokens.bind(key, instance.session_ttl)
    data.previous.append([old_sid, time.time() + instance.config.state_lifetime])
    if record["expires_at"] in data.logins:
        data.logins.remove(record["expires_at"])
    data.save()
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    owned_here(session.sid)  # type: ignore[attr-defined]
    for binding, grant in zip(replaced, replaced_grants, strict=True):
        if grant is not None and grant.key != key:
            _sign_out(instance, grant.key, binding)
        else:
            instance.tokens.unbind(binding)


def _sign_out(instance: Instance, key: GrantKey, binding: str) -> None:
    """End this browser's sign-in to ``key``: the whole grant with
    ``SPARK_LOGOUT_ENDS_GRANT`` (revoked at the platform), else just the binding."""
    if instance.config.logout_ends_grant:
        _, confirmed = instance.tokens.end(key)
        if not confirmed:
            log.warning("Flexmls did not confirm revoking the grant; signed out locally")
    else:
        instance.tokens.unbind(binding)


def _unknown_state(instance: Instance) -> Response:
    """The state is not (or no longer) one this browser may use. A browser signed in
    already (the back button after a sign-in, a reload of the callback) goes on to the
    app; any other is told the link is not recognised."""
    if current_grant(instance) is not None:
        return private(redirect(_landing(instance), 303))
    return _failed("unknown_state", 400)


def _same_origin() -> bool:
    """Whether this POST comes from a page of this site (Fetch Metadata, then Origin,
    then Referer). A request with none of them is refused."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in {"same-origin", "none"}
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    try:
        parts = urlsplit(source)
    except ValueError:
        return False
    # The host only: behind a TLS proxy without ProxyFix the scheme seen here is http.
    return parts.netloc == request.host


def logout(**_prefix_values: Any) -> Response:
    """Sign out of the current portal. With ``SPARK_LOGOUT_ENDS_GRANT`` (the default) the
    grant ends for every browser and job of the account and is revoked at the platform;
    without, only this browser's binding goes. The session id is retired either way, so a
    request still in flight cannot bring the session back."""
    if not _same_origin():
        return error_page("cross_site", 403, offer_login=False)
    require_session_store()
    instance = serving_instance()
    scope, portal = current_scope(instance)
    grant = current_grant(instance)
    data = browser_data()
    binding = data.bindings.pop(instance.slot(scope), None)
    if binding is not None:
        old_sid: str = session.sid  # type: ignore[attr-defined]
        instance.tokens.retire_session(old_sid, instance.session_ttl)
        owned_here(old_sid)
        if grant is not None:
            _sign_out(instance, grant.key, binding)
        else:
            instance.tokens.unbind(binding)
        if data.bindings:
            data.save()
            current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
            owned_here(session.sid)  # type: ignore[attr-defined]
        else:
            session.clear()
        forget_current()
        if grant is not None:
            logged_out.send(
                current_app._get_current_object(),  # type: ignore[attr-defined]
                instance=instance.name,
                scope=scope,
                portal=portal,
                account_id=grant.key.account_id,
            )
    return redirect(_landing(instance), 303)
