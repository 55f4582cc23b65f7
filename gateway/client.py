"""The one HTTP client of the gateway's API (httpx), for the `siaga` command, provisioning
and the simulators: the API token as `Authorization: Bearer`, and the API's one error
body turned back into the same error class (gateway/errors.py) by its code.

    api = Client()                     # --api, $SIAGA_API (or the local gateway), $SIAGA_TOKEN
    units = api.get("/api/v1/units")
    api.post(f"/api/v1/units/{unit_id}/decommission")

The address may be a list, comma-separated (`http://gw1:8080,http://gw2:8080`: every
gateway of a centre on one database, docs/high-availability.md). The client asks the
first; when one does not answer it asks the next, and stays with the one that answered
for the rest of its life (should that one stop answering too, it goes on down the list,
wrapping). When none answers, the error names every address it tried and why.
"""

import os

import httpx

from .errors import ApiError, SiagaError, error_for

NO_TOKEN = "set SIAGA_TOKEN (or --token) to an API token: `siaga token create --role viewer` makes one"
# A connection that cannot be made is given up sooner than a reply that is slow to come,
# so that with a list the next gateway is asked within seconds.
CONNECT_TIMEOUT_S = 3.0
# What a proxy in front of a gateway (HAProxy) answers when the gateway behind it does
# not: no gateway sent it, so it is no answer. The gateway's own replies are JSON, a 503
# included (degraded /health, a store that cannot write): that one answered, and it stays.
PROXY_STATUSES = (502, 503, 504)


def addresses(url=None):
    """The gateway addresses of `url`, $SIAGA_API or the local one on $SIAGA_HTTP_PORT, as a
    list (comma-separated in the text, in order, each once, without a trailing /)."""
    port = os.environ.get("SIAGA_HTTP_PORT", "8080")
    text = url or os.environ.get("SIAGA_API") or f"http://127.0.0.1:{port}"
    out = []
    for part in text.split(","):
        address = part.strip().rstrip("/")
        if not address:
            continue
        if not address.startswith(("http://", "https://")):
            raise SiagaError(f"the gateway address {address!r} is not http://HOST:PORT or https://...")
        if address not in out:
            out.append(address)
    if not out:
        raise SiagaError(f"no gateway address in {text!r}")
    return out


def default_url(url=None):
    """The gateway's address: `url`, $SIAGA_API, or the local one on $SIAGA_HTTP_PORT; a
    list stays a list, comma-separated (what Client takes)."""
    return ",".join(addresses(url))


class NoAnswer(Exception):
    """One address did not answer; `moves_on`: whether the request may go to the next."""

    def __init__(self, why, moves_on):
        super().__init__(why)
        self.why = why
        self.moves_on = moves_on


def _no_answer(method, error):
    """Why `error` is no answer, and whether the request may be sent to the next gateway.

    A connection never made (refused, no route, connect timeout) or never handed one
    (the client's pool) carried nothing: any request moves on. Once the request was sent
    (a read or write that failed or timed out, a connection closed before the reply) the
    gateway may have applied it and only its reply was lost: a GET is asked of the next
    one, but a POST, PUT or DELETE is not sent twice (an assignment or a status change
    would be applied a second time, with a new action id); the caller is told to look
    before repeating it."""
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return NoAnswer(_reason(error, "cannot connect"), True)
    if isinstance(error, httpx.TimeoutException):
        why = "no reply in time"
    elif isinstance(error, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        why = "the connection broke before its reply"
    else:  # a bad URL, an unsupported scheme: the next address may be right
        return NoAnswer(_reason(error, "cannot ask it"), True)
    if method == "GET":
        return NoAnswer(why, True)
    return NoAnswer(f"{why}; the {method} may have been applied: look before repeating it", False)


def _reason(error, fallback):
    text = str(error).strip()
    return f"{fallback}: {text}" if text else fallback


def _proxy_reply(method, resp):
    """A 502, 503 or 504 that is not a gateway's JSON: a proxy's, with no gateway behind
    it. A 503 means the proxy found none to send the request to: it moves on always; a
    502 or 504 may come after the gateway took the request, so only a GET moves on."""
    if resp.status_code not in PROXY_STATUSES or "json" in resp.headers.get("content-type", ""):
        return None
    why = f"HTTP {resp.status_code} from a proxy, no gateway behind it"
    if resp.status_code == 503 or method == "GET":
        return NoAnswer(why, True)
    return NoAnswer(f"{why}; the {method} may have been applied: look before repeating it", False)


class Client:
    def __init__(self, url=None, token=None, timeout=10.0):
        self.urls = addresses(url)
        self.url = self.urls[0]  # the one asked first: the one that answered last
        self.token = token if token is not None else os.environ.get("SIAGA_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
        self.http = httpx.Client(headers=headers, timeout=limits)

    def _in_turn(self):
        """The addresses in the order to ask them: the current one first, then the others
        after it, wrapping."""
        i = self.urls.index(self.url)
        return self.urls[i:] + self.urls[:i]

    def _send(self, url, method, path, body):
        try:
            resp = self.http.request(method, url + path, json=body)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise _no_answer(method, e) from None
        proxy = _proxy_reply(method, resp)
        if proxy:
            raise proxy
        return resp

    def request(self, method, path, body=None):
        """(status, JSON body) of one call; the status is never raised. A SiagaError when
        no gateway of the list answered, naming each address tried and why."""
        tried, turn = [], self._in_turn()
        for i, url in enumerate(turn):
            try:
                resp = self._send(url, method, path, body)
            except NoAnswer as e:
                tried.append(f"{url} ({e.why})")
                if e.moves_on:
                    continue
                if turn[i + 1 :]:
                    tried.append("not sent to " + ", ".join(turn[i + 1 :]))
                break
            self.url = url
            return self._decoded(resp)
        raise SiagaError("cannot reach the gateway at " + "; ".join(tried))

    @staticmethod
    def _decoded(resp):
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, {"error": {"code": "http_error", "message": resp.text[:200]}}

    def call(self, method, path, body=None, accept=()):
        """The JSON body of a call that succeeded (or whose status is in `accept`); the
        error class of the API's error body otherwise."""
        status, reply = self.request(method, path, body)
        if status < 400 or status in accept:
            return reply
        error = reply.get("error") if isinstance(reply, dict) else None
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or f"HTTP {status}")
        if status == 401:
            message = ("it refused the API token; " if self.token else "it needs an API token; ") + NO_TOKEN
        raise error_for(status, error.get("code"), f"{self.url}{path}: {status} {message}")

    def get(self, path, accept=()):
        return self.call("GET", path, accept=accept)

    def post(self, path, body=None):
        return self.call("POST", path, {} if body is None else body)

    def close(self):
        self.http.close()


__all__ = ["ApiError", "Client", "addresses", "default_url"]
