"""The simulator's WSGI side: parse each request, apply faults, answer like the platform.

The platform's state is read and changed through the request-handling methods of
:class:`~flask_spark.testing.state.PlatformState`, each of which holds its lock.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import data
from .faults import (
    DROP_KEY,
    MESSAGES,
    STREAM_KEY,
    envelope_error,
    json_response,
)
from .oauth import MISMATCH
from .openid import OpenIDProvider
from .pages import consent_page, error_page, html_response
from .records import RecordedRequest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .oauth import Grant
    from .state import PlatformState

__all__ = ["Router", "route_of"]

logger = logging.getLogger("flask_spark.testing")

_MAX_BODY = 1024 * 1024
#: The longest request target (path and query) the simulator takes, like the platform's
#: front end: longer ones are answered 414, so a client has to send them as a POST.
MAX_URL_LENGTH = 8000
#: Answers shorter than this go uncompressed.
_COMPRESS_FROM = 512
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: The WSGI environ key of an ``"id_token"`` fault for the token endpoint's answer.
_ID_TOKEN_FAULT = "flask_spark.testing.id_token_fault"  # noqa: S105 - an environ key

_URL_MAP = Map(
    [
        Rule("/", endpoint="index", methods=["GET"]),
        Rule("/oauth2", endpoint="authorize", methods=["GET", "POST"]),
        Rule("/auth/vow/<portal>", endpoint="authorize", methods=["GET", "POST"]),
        Rule("/v1/oauth2/grant", endpoint="grant", methods=["POST"]),
        Rule("/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
        Rule("/openid/jwks", endpoint="jwks", methods=["GET"]),
        Rule("/openid/authorize", endpoint="openid_authorize", methods=["GET", "POST"]),
        Rule("/openid/token", endpoint="openid_token", methods=["POST"]),
        Rule("/openid/userinfo", endpoint="userinfo", methods=["GET", "POST"]),
        Rule("/openid/revoke", endpoint="openid_revoke", methods=["POST"]),
        Rule("/v1/oauth2/token/<token>", endpoint="revoke", methods=["DELETE"]),
        Rule("/v1/my/account", endpoint="my_account", methods=["GET"]),
        Rule("/v1/my/contact", endpoint="my_contact", methods=["GET"]),
        Rule("/v1/portal", endpoint="portal", methods=["GET"]),
        Rule("/v1/system", endpoint="system", methods=["GET"]),
        Rule("/v1/listings", endpoint="listings", methods=["GET"]),
        Rule("/replication/v1/listings", endpoint="replicated_listings", methods=["GET"]),
        Rule("/v1/my/listings", endpoint="my_listings", methods=["GET"]),
        Rule("/v1/listings/<listing_id>", endpoint="listing", methods=["GET"]),
        Rule("/photos/<listing_id>/<int:number>/<size>", endpoint="photo", methods=["GET"]),
        Rule("/v1/contacts", endpoint="contacts", methods=["GET", "POST"]),
        Rule(
            "/v1/contacts/<contact_id>",
            endpoint="contact",
            methods=["GET", "PUT", "PATCH", "DELETE"],
        ),
    ],
    strict_slashes=False,
    merge_slashes=False,
)


#: Endpoints that take no access token (nor the user agent header).
_UNAUTHENTICATED = frozenset(
    {
        "index",
        "authorize",
        "grant",
        "photo",
        "discovery",
        "jwks",
        "openid_authorize",
        "openid_token",
        "userinfo",
        "openid_revoke",
    }
)


def route_of(path: str) -> str:
    """The route name of a path, as faults and :class:`RecordedRequest` use it."""
    if path in {"/oauth2", "/openid/authorize"} or path.startswith("/auth/vow/"):
        return "authorize"
    if path in {"/v1/oauth2/grant", "/openid/token"}:
        return "grant"
    if path.startswith("/v1/oauth2/token/") or path == "/openid/revoke":
        return "revoke"
    if path == "/openid/userinfo":
        return "userinfo"
    if path in {"/.well-known/openid-configuration", "/openid/jwks"}:
        return "discovery"
    if path.startswith(("/v1/", "/replication/v1/")):
        return "data"
    return "other"


def _auth(request: Request) -> tuple[str | None, str | None]:
    """The scheme and token of the ``Authorization`` header."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None, None
    scheme, _, token = header.partition(" ")
    return scheme, token.strip() or None


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data(cache=True))
    except ValueError:
        return None


def _redirect(uri: str, params: Mapping[str, str | None]) -> Response:
    """302 to ``uri`` with ``params`` appended, keeping its own query string as it is."""
    parts = urlsplit(uri)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    query = f"{parts.query}&{extra}" if parts.query else extra
    location = urlunsplit(parts._replace(query=query))
    response = Response(b"", 302, headers={"Location": location, **_NO_STORE})
    response.autocorrect_location_header = False
    return response


def _envelope(results: list[Any], status: int = 200) -> Response:
    return json_response(status, {"D": {"Success": True, "Results": results}})


def _overridden(request: Request) -> bool:
    """A ``POST`` that says it is a ``GET`` (``X-HTTP-Method-Override``), its parameters
    form-encoded in the body, as FBS's clients send queries too long for a URL."""
    override = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
    return request.method == "POST" and override == "GET"


def _as_get(request: Request) -> Request:
    body = request.get_data(cache=True)
    environ = dict(request.environ)
    environ.update(
        REQUEST_METHOD="GET",
        QUERY_STRING=body.decode("latin-1"),
        CONTENT_LENGTH="0",
        CONTENT_TYPE="",
    )
    environ["wsgi.input"] = io.BytesIO(b"")
    again = Request(environ)
    again.max_content_length = _MAX_BODY
    return again


def _finish(request: Request, response: Response) -> dict[str, Any]:
    """Give every answer an ``X-Request-Id``, and compress it when the client accepts
    gzip or deflate; what was sent, for the request's record."""
    request_id = uuid.uuid4().hex
    response.headers["X-Request-Id"] = request_id
    if request.environ.get(STREAM_KEY) or response.is_streamed:
        return {"request_id": request_id}
    plain = response.get_data()
    # Werkzeug reads the header, q-values included (``gzip;q=0`` refuses gzip).
    encoding = request.accept_encodings.best_match(["gzip", "deflate"])
    if encoding is None or len(plain) < _COMPRESS_FROM:
        return {
            "request_id": request_id,
            "response_bytes": len(plain),
            "response_plain_bytes": len(plain),
        }
    wire = gzip.compress(plain, mtime=0) if encoding == "gzip" else zlib.compress(plain)
    response.set_data(wire)
    response.headers["Content-Encoding"] = encoding
    response.vary.add("Accept-Encoding")
    return {
        "request_id": request_id,
        "response_encoding": encoding,
        "response_bytes": len(wire),
        "response_plain_bytes": len(plain),
    }


class Router:
    """The WSGI application of a :class:`~flask_spark.testing.SparkPlatform`: answers each
    request from, and records it in, the platform's ``state``."""

    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        request = Request(environ)
        request.max_content_length = _MAX_BODY
        route = route_of(request.path)
        status = 0
        sent: dict[str, Any] = {}
        received_at = self.state.clock()
        started = self.state.started()
        try:
            response = self._serve(request, route)
            if response is not None:
                status = response.status_code
                sent = _finish(request, response)
        except Exception as exc:  # never let a bug leak a token into the server's log
            logger.error(
                "simulator error %s:\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            response = envelope_error(500, 1026)
            status = 500
        finally:
            self._record(request, route, status, {**sent, "received_at": received_at}, started)
        if response is None:  # dropped: the server closes the connection instead
            response = Response(b"", 500)
        return response(environ, start_response)

    def _record(
        self,
        request: Request,
        route: str,
        status: int,
        sent: dict[str, Any],
        started: Token[int | None],
    ) -> None:
        entry: RecordedRequest | None = None
        try:
            try:
                body = request.get_data(cache=True)
            except HTTPException:
                body = b""
            entry = RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.args.to_dict(),
                headers=Headers(request.headers),
                body=body,
                json=_json_body(request) if body else None,
                auth_scheme=_auth(request)[0],
                route=route,
                status=status,
                **sent,
            )
        except Exception as exc:
            logger.error("simulator could not record a request: %s", type(exc).__name__)
        finally:
            self.state.finished(entry, started)

    def _serve(self, request: Request, route: str) -> Response | None:
        state = self.state
        latency = state.settings.latency
        if latency:
            time.sleep(latency)
        if route == "grant" and request.method == "POST":
            state.count("grant_calls")
        elif route == "data":
            state.count("data_calls")
        try:
            request.get_data(cache=True)
        except HTTPException:
            return envelope_error(413, 1050, "The request body is too large")
        target = len(request.environ.get("PATH_INFO", "")) + len(request.query_string)
        if target > MAX_URL_LENGTH:
            return html_response(414, "URI Too Long", "The request URI is too long.")
        server_environ = request.environ  # the server reads what the faults ask here
        if route == "data" and _overridden(request):
            request = _as_get(request)
        fault = state.take_fault(route)
        if fault is not None:
            if fault.kind == "drop":
                server_environ[DROP_KEY] = True
                return None
            if fault.kind == "delay":
                time.sleep(fault.delay)
            elif fault.kind == "id_token":
                request.environ[_ID_TOKEN_FAULT] = fault
            elif fault.kind in {"tamper", "trickle"}:
                if fault.kind == "trickle":
                    server_environ[STREAM_KEY] = True
                return fault.alter(self._dispatch(request))
            else:
                return fault.response(route)
        return self._dispatch(request)

    def _dispatch(self, request: Request) -> Response:
        adapter = _URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as exc:
            allowed = ", ".join(exc.valid_methods or [])
            return envelope_error(405, 405, headers={"Allow": allowed})
        except HTTPException:
            return envelope_error(404, 404)
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        if endpoint in _UNAUTHENTICATED:
            return handler(request, **args)
        if not request.headers.get("X-SparkApi-User-Agent", "").strip():
            return envelope_error(400, 1016)
        if endpoint == "revoke":
            return handler(request, **args)
        grant = self.state.authenticate(_auth(request)[1])
        if grant == 1020:
            return envelope_error(
                401,
                1020,
                headers={"WWW-Authenticate": "OAuth realm='Flexmls API', error='expired_token'"},
            )
        if isinstance(grant, int):
            return envelope_error(
                401, 1000, headers={"WWW-Authenticate": "OAuth realm='Flexmls API'"}
            )
        settings = self.state.settings
        if settings.replication_only and not request.path.startswith("/replication/"):
            return envelope_error(403, 1021)
        retry_after = self.state.over_rate_limit(grant.client_id)
        if retry_after is not None:
            return envelope_error(
                settings.rate_limit_status, 1550, headers={"Retry-After": str(retry_after)}
            )
        try:
            return handler(request, grant, **args)
        except data.DataError as exc:
            return envelope_error(exc.status, exc.code, exc.message)

    # -- pages ------------------------------------------------------------------------

    def _index(self, request: Request) -> Response:
        return html_response(
            200,
            "Flask-Spark simulator",
            "A simulated FBS Spark platform for testing. Authorization: /oauth2 and "
            "/auth/vow/<portal>; API: /v1/.",
        )

    def _openid_authorize(self, request: Request) -> Response:
        return self._authorize(request, flow="openid")

    def _authorize(
        self, request: Request, portal: str | None = None, flow: str = "oauth2"
    ) -> Response:
        settings = self.state.settings
        params = request.form if request.method == "POST" else request.args
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        state = params.get("state")
        client = self.state.client(client_id)
        if client is None:
            if redirect_uri and self.state.known_redirect_uri(redirect_uri):
                return _redirect(
                    redirect_uri,
                    {
                        "error": "unauthorized_client",
                        "error_description": "Parameter client_id is not a known API key",
                        "state": state,
                    },
                )
            return error_page(400, "unauthorized_client", "Unknown client_id")
        if redirect_uri not in client.redirect_uris:
            # Unlike the platform's, the simulator's page shows both sides: it runs on
            # the developer's own machine.
            return error_page(
                400,
                "redirect_uri_mismatch",
                MISMATCH,
                [
                    ("Sent", redirect_uri or "(none)"),
                    ("Registered", " ".join(client.redirect_uris) or "(none)"),
                    (
                        "To accept it",
                        (
                            "python -m flask_spark.testing --redirect-uri URI, or "
                            "SparkPlatform.register_client(...)"
                        ),
                    ),
                ],
            )
        if params.get("response_type") != "code":
            return _redirect(
                redirect_uri,
                {
                    "error": "invalid_request",
                    "error_description": "Parameter response_type must be code",
                    "state": state,
                },
            )
        if flow == "openid" and "openid" not in params.get("scope", "").split():
            return _redirect(
                redirect_uri,
                {
                    "error": "invalid_scope",
                    "error_description": "The scope must include openid",
                    "state": state,
                },
            )
        role = "vow" if portal is not None else "idx"
        decision = request.form.get("decision") if request.method == "POST" else None
        if settings.force_deny or decision == "deny":
            self.state.count("denials")
            return _redirect(
                redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The user denied access to the application",
                    "state": state,
                },
            )
        # A VOW portal is signed in to by its consumers; the other endpoints by agents.
        accounts = data.consumers(portal) if portal is not None else data.ACCOUNTS
        if decision == "approve" or (request.method == "GET" and settings.auto_approve):
            user_id = request.form.get("user") or accounts[0]["Id"]
            if user_id not in {a["Id"] for a in accounts}:
                return error_page(400, "invalid_request", "Unknown user")
            code = self.state.issue_code(
                client_id,
                redirect_uri,
                user_id,
                role,
                portal,
                flow=flow,
                nonce=params.get("nonce"),
            )
            return _redirect(redirect_uri, {"code": code, "state": state})
        if request.method == "POST":
            return error_page(400, "invalid_request", "Choose Approve or Deny")
        hidden = {
            name: params[name]
            for name in ("response_type", "client_id", "redirect_uri", "state", "scope", "nonce")
            if name in params
        }
        return consent_page(request.path, hidden, client_id, portal, accounts)

    # -- OAuth grant and revocation ---------------------------------------------------

    def _grant(self, request: Request) -> Response:
        body = _json_body(request) if request.mimetype == "application/json" else None
        if not isinstance(body, dict):
            return json_response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The request body must be a JSON object sent with "
                    "Content-Type: application/json",
                },
                headers=_NO_STORE,
            )
        status, answer = self.state.grant_request(body)
        return json_response(status, answer, headers=_NO_STORE)

    def _revoke(self, request: Request, token: str) -> Response:
        if not self.state.revoke(token):
            return envelope_error(401, 1000)
        return json_response(200, {"D": {"Success": True}})

    # -- OpenID Connect ---------------------------------------------------------------

    def _discovery(self, request: Request) -> Response:
        return json_response(
            200,
            OpenIDProvider.discovery(
                self.state.served_url(), self.state.settings.openid_auth_methods
            ),
        )

    def _jwks(self, request: Request) -> Response:
        return json_response(200, self.state.jwks())

    def _client_credentials(self, request: Request) -> tuple[str, str]:
        """The client's id and secret, from ``client_secret_basic`` or the form
        (``client_secret_post``), whichever the platform takes; none otherwise."""
        methods = self.state.settings.openid_auth_methods
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            if "client_secret_basic" not in methods:
                return "", ""
            return auth.username or "", auth.password or ""
        if "client_secret_post" not in methods:
            return "", ""
        return request.form.get("client_id", ""), request.form.get("client_secret", "")

    def _openid_token(self, request: Request) -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return json_response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The request body must be form-encoded",
                },
                headers=_NO_STORE,
            )
        client_id, client_secret = self._client_credentials(request)
        body: dict[str, Any] = {
            k: v
            for k, v in request.form.items()
            if k in {"grant_type", "code", "redirect_uri", "refresh_token"}
        }
        body.update(client_id=client_id, client_secret=client_secret)
        fault = request.environ.get(_ID_TOKEN_FAULT)
        status, answer = self.state.openid_token_request(
            body,
            None if fault is None else fault.claims,
            "valid" if fault is None else fault.signing,
        )
        return json_response(status, answer, headers=_NO_STORE)

    def _userinfo(self, request: Request) -> Response:
        claims = self.state.userinfo(_auth(request)[1])
        if claims is None:
            return json_response(
                401,
                {"error": "invalid_token", "error_description": "The access token is invalid"},
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return json_response(200, claims, headers=_NO_STORE)

    def _openid_revoke(self, request: Request) -> Response:
        client_id, client_secret = self._client_credentials(request)
        revoked = self.state.openid_revoke(client_id, client_secret, request.form.get("token", ""))
        if revoked is None:
            return json_response(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        # RFC 7009: 200 whether or not the token was live.
        return Response(b"", 200)

    # -- data -------------------------------------------------------------------------

    def _my_account(self, request: Request, grant: Grant) -> Response:
        return _envelope([data.account(grant.user_id)])

    def _my_contact(self, request: Request, grant: Grant) -> Response:
        if grant.portal is None:
            return envelope_error(403, 1015, "Only a VOW portal's consumer has a contact record")
        return _envelope([data.my_contact(grant.user_id, grant.portal)])

    def _portal(self, request: Request, grant: Grant) -> Response:
        if grant.portal is None:
            return envelope_error(403, 1015, "Only a VOW portal's consumer has a portal")
        return _envelope([data.portal(grant.portal)])

    def _system(self, request: Request, grant: Grant) -> Response:
        return _envelope([data.system(self.state.url)])

    def _listing_page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        args = request.args
        items = data.filter_listings(items, args.get("_filter", ""))
        items = data.order_by(items, args.get("_orderby", ""))
        found = data.page(items, args)
        data.expand(found["Results"], args.get("_expand", ""), self.state.url or "")
        return json_response(200, {"D": found})

    def _replicated_listings(self, request: Request, grant: Grant) -> Response:
        held = data.replication_listings(self.state.settings.replication_records)
        records = data.filter_listings(held, request.args.get("_filter", ""))
        return json_response(200, {"D": data.replication_page(records, request.args)})

    def _listings(self, request: Request, grant: Grant) -> Response:
        return self._listing_page(request, list(data.LISTINGS))

    def _my_listings(self, request: Request, grant: Grant) -> Response:
        return self._listing_page(request, data.my_listings(grant.user_id))

    def _listing(self, request: Request, grant: Grant, listing_id: str) -> Response:
        found = data.listing(listing_id)
        if found is None:
            return envelope_error(404, 404, f"Listing {listing_id[:40]} was not found")
        data.expand([found], request.args.get("_expand", ""), self.state.url or "")
        return _envelope([found])

    def _photo(self, request: Request, listing_id: str, number: int, size: str) -> Response:
        image = data.photo_image(listing_id, number, size)
        if image is None:
            return html_response(404, "Not found", "There is no such photo.")
        return Response(
            image,
            200,
            content_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def _write_body(self, request: Request) -> dict[str, Any]:
        body = _json_body(request) if request.mimetype == "application/json" else None
        if not isinstance(body, dict) or not isinstance(body.get("D"), dict):
            raise data.DataError(1035, 400, MESSAGES[1035])
        fields: dict[str, Any] = body["D"]
        return fields

    def _contacts(self, request: Request, grant: Grant) -> Response:
        if request.method == "POST":
            fields = data.clean_contact(self._write_body(request))
            record = self.state.new_contact(grant, fields)
            return _envelope([{"ResourceUri": record["ResourceUri"]}], status=201)
        return json_response(200, {"D": data.page(self.state.contacts(grant), request.args)})

    def _contact(self, request: Request, grant: Grant, contact_id: str) -> Response:
        if request.method in {"PUT", "PATCH"}:
            fields = data.clean_contact(self._write_body(request), partial=True)
            if not self.state.update_contact(grant, contact_id, fields):
                return envelope_error(404, 404)
            return json_response(200, {"D": {"Success": True}})
        if request.method == "DELETE":
            if not self.state.delete_contact(grant, contact_id):
                return envelope_error(404, 404)
            return json_response(200, {"D": {"Success": True}})
        for record in self.state.contacts(grant):
            if record["Id"] == contact_id:
                return _envelope([record])
        return envelope_error(404, 404)
