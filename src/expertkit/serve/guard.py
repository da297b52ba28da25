"""Who may ask: API keys mapped to access groups (or, before any key exists, only this machine), and the
protections every response carries: a body size limit and security headers, with the chat page's
Content-Security-Policy."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from fastapi import Request

from expertkit.config import is_loopback_host as is_loopback
from expertkit.errors import ExpertkitError
from expertkit.serve.api import ApiError


@dataclass
class Caller:
    name: str
    groups: tuple[str, ...] | None  # None = the workspace owner (no keys are configured)


class KeyCheck:
    """The caller a request comes from, or 401. Every API route depends on it (FastAPI ``Depends``), so the
    key is checked before the body is read: a stranger learns nothing from a 400.

    ``keys`` is a KeyStore; while it has never held a key, only requests from this machine are answered,
    as the owner. ``require_keys`` (a server on a network interface) asks for a key always, even before
    any is made."""

    def __init__(self, keys=None, require_keys: bool = False) -> None:
        self.keys, self.require_keys = keys, require_keys

    def __call__(self, request: Request) -> Caller:
        try:
            configured = self.keys is not None and self.keys.configured()
        except ExpertkitError:
            raise ApiError(
                503, "the server's API keys are unreadable: its owner must repair .expertkit/keys.json", "server_error"
            ) from None
        if not configured and not self.require_keys:
            # no key was ever made: the owner's own machine only. The Host check stops a web page that
            # rebinds its name to 127.0.0.1 (DNS rebinding) from reading the documents through a browser.
            if not is_loopback(request.url.hostname or "") or not is_loopback(peer(request)):
                raise ApiError(
                    401,
                    "this server has no API keys, so it answers only requests to 127.0.0.1",
                    "invalid_request_error",
                    code="invalid_api_key",
                )
            proxied = sorted(h for h in PROXY_HEADERS if h in request.headers)
            if proxied:  # a reverse proxy on this machine would pass every remote user off as the owner
                raise ApiError(
                    401,
                    f"this request came through a proxy ({proxied[0]}): without API keys the server "
                    "answers only direct requests from this machine; make a key with `expertkit keys "
                    "add NAME --group G` and serve with --behind-proxy",
                    "invalid_request_error",
                    code="invalid_api_key",
                )
            return Caller("owner", None)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "no API key: send the header `Authorization: Bearer ek-…`; the workspace owner makes one with "
                "`expertkit keys add NAME --group G`",
                "invalid_request_error",
                code="invalid_api_key",
            )
        record = self.keys.verify(token.strip())
        if record is None:  # the key itself is never echoed, logged or stored
            raise ApiError(401, "invalid or revoked API key", "invalid_request_error", code="invalid_api_key")
        return Caller(record.name, tuple(record.groups))


class BodyLimit:
    """A request body over ``limit`` bytes gets 413: at once when Content-Length says so, else as soon as
    the bytes received pass it. Plain ASGI (not BaseHTTPMiddleware), so handlers still see a client leave."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit).response()(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Headers on every response: no MIME sniffing, no framing, no referrer; on the chat page, a
    Content-Security-Policy that runs only the page's own script and style (by hash) and lets it talk
    only to this server. Plain ASGI, as BodyLimit, so streams and disconnects pass through untouched."""

    def __init__(self, app, page_policy: str) -> None:
        self.app, self.page_policy = app, page_policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    headers += [
                        (b"content-security-policy", self.page_policy.encode()),
                        (b"cache-control", b"no-store"),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via")


def peer(request: Request) -> str:
    """The address the connection came from (uvicorn runs with proxy_headers off, so no header rewrites it)."""
    return request.client.host if request.client else ""


def chat_page() -> str:
    return resources.files("expertkit.serve").joinpath("chat.html").read_text(encoding="utf-8")


def page_policy(html: str) -> str:
    """The chat page's Content-Security-Policy: its inline script and style allowed by their SHA-256, so
    text injected into the page could never run; fetches to this server only; no frames, forms or plugins."""
    import base64
    import hashlib
    import re

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _too_large(limit: int) -> ApiError:
    message = f"the request body is over {limit // 1024} KiB (serve.max_body_kb): send less"
    return ApiError(413, message, "invalid_request_error", "body")
