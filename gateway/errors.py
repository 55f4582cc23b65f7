"""One error hierarchy for the gateway, translated once at each edge.

    SiagaError
    ├── ProtocolError      a payload does not decode (docs/protocol.md "Errors")
    ├── Rejected           it decodes, but must not touch a unit's state (quarantine)
    ├── ConfigError        a setting is missing or invalid
    └── ApiError           an HTTP request that cannot be served
        ├── BadRequest     400: a parameter is wrong
        ├── NotFound       404: no such unit (or other resource)
        ├── Conflict       409: the unit's state forbids it (e.g. it is decommissioned)
        └── Unavailable    503: not now
            └── StoreUnavailable  the gateway's store cannot write (disk full, I/O error)

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


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"
