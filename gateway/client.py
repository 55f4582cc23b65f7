"""The one HTTP client of the gateway's API (httpx), for the `siaga` command, provisioning
and the simulators: the API token as `Authorization: Bearer`, and the API's one error
body turned back into the same error class (gateway/errors.py) by its code.

    api = Client.from_env()            # $SIAGA_API (or the local gateway), $SIAGA_TOKEN
    units = api.get("/api/v1/units")
    api.post(f"/api/v1/units/{unit_id}/decommission")
"""

import os

import httpx

from .errors import ApiError, SiagaError, error_for

NO_TOKEN = "set SIAGA_TOKEN (or --token) to an API token: `siaga token create --role viewer` makes one"


def default_url(url=None):
    """The gateway's address: `url`, $SIAGA_API, or the local one on $SIAGA_HTTP_PORT."""
    port = os.environ.get("SIAGA_HTTP_PORT", "8080")
    return (url or os.environ.get("SIAGA_API") or f"http://127.0.0.1:{port}").rstrip("/")


class Client:
    def __init__(self, url=None, token=None, timeout=10.0):
        self.url = default_url(url)
        self.token = token if token is not None else os.environ.get("SIAGA_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method, path, body=None):
        """(status, JSON body) of one call; the status is never raised."""
        try:
            resp = self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise SiagaError(f"cannot reach the gateway at {self.url}: {e}") from None
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


__all__ = ["ApiError", "Client", "default_url"]
