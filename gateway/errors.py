"""One error hierarchy for the gateway, translated once at each edge.

    SiagaError
    ├── ProtocolError      a payload does not decode (docs/protocol.md "Errors")
    ├── Rejected           it decodes, but must not touch a unit's state (quarantine)
    ├── ConfigError        a setting is missing or invalid
    └── ApiError           an HTTP request that cannot be served
        ├── BadRequest     400: a parameter is wrong
        ├── Unauthenticated 401: no login, or a wrong or expired one
        │   └── BadCredentials   a wrong name or password at login
        ├── Forbidden      403: the role may not do this
        │   └── CsrfRefused      a session's change without its CSRF token
        ├── NotFound       404: no such unit (or other resource)
        ├── Conflict       409: the unit's state forbids it (decommissioned), or it exists
        │   └── NotAvailable     assigning a unit that is not available, unconfirmed
        ├── RangeNotSatisfiable 416: a Range header the file cannot serve (the basemap)
        ├── Throttled      429: too many logins tried, or too many being checked
        └── Unavailable    503: not now
            ├── StoreUnavailable  the gateway's store cannot write (disk full, I/O error)
            └── TooManyStreams    too many live streams are open

The CLI turns a SiagaError into a message and exit code 2; the HTTP API into one JSON
body `{"error": {"code": ..., "message": ...}}` with the ApiError's status.
"""


class SiagaError(Exception):
    code = "error"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ProtocolError(SiagaError):
    """`code` is one of the protocol's refusal reasons (bad_json, bad_length, ...)."""


class Rejected(SiagaError):
    """`code` is the quarantine reason (unknown_unit, impossible_value, ...)."""


class ConfigError(SiagaError):
    code = "config"


class ApiError(SiagaError):
    status = 500


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class BadCredentials(Unauthenticated):
    code = "bad_credentials"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class CsrfRefused(Forbidden):
    code = "csrf"


class Throttled(ApiError):
    status = 429
    code = "throttled"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class NotAvailable(Conflict):
    """An assignment of a unit that is not available (busy, assigned, offline, ...)
    without the dispatcher's confirmed override (`override_reason`)."""

    code = "not_available"


class RangeNotSatisfiable(ApiError):
    """`size`: the file's length, which the answer states (Content-Range: bytes */size)."""

    status = 416
    code = "range_not_satisfiable"

    def __init__(self, message, code=None, size=None):
        super().__init__(message, code)
        self.headers = {} if size is None else {"Content-Range": f"bytes */{size}"}


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class TooManyStreams(Unavailable):
    code = "too_many_streams"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def error_for(status, code, message):
    """The ApiError an error body stands for (gateway/client.py): the class with that
    code, else the most general one with that status."""
    classes = list(_subclasses(ApiError))
    for cls in classes:
        if cls.code == code and cls.status == status:
            return cls(message)
    for cls in classes:
        if cls.status == status:
            return cls(message, code)
    error = ApiError(message, code)
    error.status = status
    return error
