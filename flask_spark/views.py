"""The ``spark`` blueprint: ``GET /login``, ``GET /callback``, ``POST /logout``."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, has_request_context, redirect, request, session, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from .errors import GrantError, PlatformUnavailable, StoreUnavailable
from .extension import SparkState, current_scope, reset_client, spark_state, user_grant
from .grant import TokenRecord, authorization_url
from .pages import clean_description, error_page
from .redirects import safe_next
from .sessions import require_session_store, store_errors
from .signals import logged_out, login_failed, token_obtained
from .state import PendingLogin, add_pending, new_state, pop_pending
from .tokens import GrantRef, session_owner

log = logging.getLogger("flask_spark")

_CODE_RE = re.compile(r"[\x21-\x7e]{1,512}")
_CALLBACK_PARAMS = ("state", "code", "error", "error_description")
_MAX_PARAM = 4096
_SIGNED_IN_KEY = "_spark_signed_in"


def make_blueprint() -> Blueprint:
    """A fresh ``spark`` blueprint (one per app)."""
    bp = Blueprint("spark", __name__, template_folder="templates")
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


def _redirect_uri(state: SparkState) -> str:
    return state.config.redirect_uri or url_for("spark.callback", _external=True)


def _landing(state: SparkState) -> str:
    """``SPARK_LOGIN_REDIRECT``; a path is taken within the app's mount point."""
    target = state.config.login_redirect
    if safe_next(target) is not None:
        return request.script_root + target
    return target


def login(**_prefix_values: Any) -> Response:
    """Start a sign-in: remember a fresh state, then redirect to the platform."""
    require_session_store()
    state = spark_state()
    scope, portal = current_scope(state)
    redirect_uri = _redirect_uri(state)
    oauth_state = new_state()
    record = PendingLogin(
        state=oauth_state,
        next=safe_next(args.get("next")) if (args := _args()) is not None else None,
        scope=scope,
        portal=portal,
        redirect_uri=redirect_uri,
        expires_at=time.time() + state.config.state_lifetime,
    )
    add_pending(session, record, state.config.max_pending_logins)
    response = redirect(authorization_url(state.config, redirect_uri, oauth_state, portal), 302)
    response.headers["Cache-Control"] = "no-store"
    return response


def _failed(reason: str, status: int, **context: Any) -> Response:
    """Tell receivers of ``login_failed``; the first Response one returns wins."""
    error = context.get("error")
    description = context.get("description")
    log.info("Flexmls sign-in failed: %s", reason)
    for _receiver, value in login_failed.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        reason=reason,
        error=error,
        description=description,
    ):
        if isinstance(value, Response):
            value.headers["Cache-Control"] = "no-store"
            value.headers["Referrer-Policy"] = "no-referrer"
            return value
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


def callback(**_prefix_values: Any) -> Response:
    """Finish a sign-in: check the state, exchange the code, keep the tokens."""
    require_session_store()
    state = spark_state()
    params = _single_params()
    if params is None:
        return _failed("bad_request", 400)
    cookie_came = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    oauth_state = params.get("state", "")
    outcome, record = pop_pending(session, oauth_state) if oauth_state else ("unknown", None)
    retry_url = url_for("spark.login", next=record["next"]) if record else None

    error = params.get("error")
    if error is not None:
        error = clean_description(error)
        # The platform's words are shown only for a sign-in this browser started: anyone
        # can link to /callback with an error_description of their own.
        description = clean_description(params.get("error_description")) if record else None
        if error == "access_denied":
            return _failed(
                "cancelled", 403, error=error, description=description, retry_url=retry_url
            )
        return _failed(
            "platform_error", 400, error=error, description=description, retry_url=retry_url
        )

    if outcome == "expired":
        return _failed("expired_state", 400, retry_url=retry_url)
    if record is None:
        if not cookie_came:
            return _failed("no_cookie", 400)
        return _unknown_state(state)

    code = params.get("code", "")
    if not _CODE_RE.fullmatch(code):
        return _failed("bad_request", 400)
    # The session is saved only when this request ends: a second callback with the same
    # state (a reload, a double click) may still find it. Exactly one may spend the code.
    used = hashlib.sha256(oauth_state.encode()).hexdigest()
    if not state.tokens.store.claim(f"state:{used}", int(state.config.state_lifetime) + 60):
        return _unknown_state(state)

    try:
        tokens = state.grants.exchange_code(code, record["redirect_uri"])
    except GrantError as exc:
        return _failed(
            "exchange_failed",
            400,
            error=exc.error,
            description=clean_description(exc.description),
            retry_url=retry_url,
        )
    except PlatformUnavailable:
        return _failed("platform_unavailable", 502, retry_url=retry_url)
    tokens["redirect_uri"] = record["redirect_uri"]

    failures: tuple[type[BaseException], ...] = (StoreUnavailable, *store_errors())
    try:
        _keep_tokens(state, record, tokens)
    except failures:
        # The code is spent: give the grant back rather than leave it orphaned.
        state.grants.revoke(tokens["access_token"])
        return _failed("store_unavailable", 503, retry_url=retry_url)
    reset_client()
    token_obtained.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        scope=record["scope"],
        portal=record["portal"],
    )
    response = redirect(record["next"] or _landing(state), 303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _keep_tokens(state: SparkState, record: PendingLogin, tokens: TokenRecord) -> None:
    """Rotate the session id, move the session's records to it, store the new tokens."""
    old_owner = session_owner(session.sid)  # type: ignore[attr-defined]
    if state.config.one_portal_per_session:
        _revoke_all(state, old_owner)
    # Keep the session non-empty, else Flask-Session would neither rotate nor save it.
    session[_SIGNED_IN_KEY] = True
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    new_owner = session_owner(session.sid)  # type: ignore[attr-defined]
    state.tokens.rotate_owner(old_owner, new_owner, keep=not state.config.one_portal_per_session)
    state.tokens.store_new(GrantRef(new_owner, record["scope"], state.session_ttl), tokens)


def _unknown_state(state: SparkState) -> Response:
    """The state is not (or no longer) one this browser may use: say so, and offer a way
    on to the app if the browser is signed in already (a back button, a reload)."""
    scope, _ = current_scope(state)
    ref = user_grant(state, scope)
    signed_in = ref is not None and state.tokens.store.load(ref.owner, ref.scope) is not None
    return _failed("unknown_state", 400, signed_in=signed_in, continue_url=_landing(state))


def _revoke_all(state: SparkState, owner: str) -> None:
    """Revoke (best effort) every grant ``owner`` holds, before they are dropped."""
    for scope in state.tokens.store.scopes(owner):
        record = state.tokens.store.load(owner, scope)
        if record is not None and record["access_token"]:
            state.grants.revoke(record["access_token"])


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
    """Sign out of the current portal: revoke at the platform (best effort), delete the
    tokens, and clear the session unless other portals are still signed in."""
    if not _same_origin():
        return error_page("cross_site", 403, offer_login=False)
    require_session_store()
    state = spark_state()
    scope, portal = current_scope(state)
    ref = user_grant(state, scope)
    if ref is not None:
        record = state.tokens.store.load(ref.owner, ref.scope)
        token = record["access_token"] if record is not None else ""
        if token and not state.grants.revoke(token):
            log.warning("Flexmls did not confirm revoking the grant; signed out locally")
        remaining = state.tokens.forget(ref)
        if remaining:
            session.pop("_spark_pending", None)
        else:
            session.clear()
        reset_client()
        if record is not None:
            logged_out.send(
                current_app._get_current_object(),  # type: ignore[attr-defined]
                scope=scope,
                portal=portal,
            )
    return redirect(_landing(state), 303)
