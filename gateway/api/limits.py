"""Bounds on what an HTTP request may bring, before any route reads it."""

import json

MAX_BODY = 64 * 1024  # bytes of a request body: the largest real one (a settings push) is ~2 KB


class BodyLimit:
    """ASGI middleware: a request body is read whole here, up to MAX_BODY, before the app
    sees it; one over the limit (by its Content-Length, or by the chunks it sends) is
    refused with 413 and the one error body."""

    def __init__(self, app, limit=MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send, 413 if length.isdigit() else 400)
        body, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, body)) > self.limit:
                return await self._refuse(send, 413)
        whole = {"type": "http.request", "body": b"".join(body), "more_body": False}
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # after the body: the disconnect, when it comes
            sent = True
            return whole

        await self.app(scope, replay, send)

    async def _refuse(self, send, status):
        message = f"a request body may hold at most {self.limit} bytes"
        if status == 400:
            message = "Content-Length is not a number"
        code = "too_large" if status == 413 else "bad_request"
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
