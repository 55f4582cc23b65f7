"""The OpenAPI document says every error an operation can answer, each with the one
error body (api.error_body), and 400 where FastAPI would say 422."""

from . import logins

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
WHY = {
    "400": "a parameter or the body is wrong (`message` names it)",
    "401": "no login, or a wrong or expired one",
    "403": "the role may not do this, or the CSRF token is missing",
    "404": "no such unit (or user, or setting)",
    "409": "the unit's state forbids it (decommissioned; for an assignment, `not_available`"
    " unless confirmed with `override_reason`), or it exists already",
    "413": "the request body is too large",
    "429": "too many logins tried: wait, or the gateway is busy checking others",
    "503": "not now: the store cannot write, or too many live streams (/health: degraded)",
}


def _errors(method, path, op):
    public = logins.required(method.upper(), path) == logins.PUBLIC
    codes = set()
    if op.get("parameters") or op.get("requestBody"):
        codes.add("400")
    if not public:
        codes |= {"401", "403"}
    if "{" in path or any(p.get("name") == "unit_id" for p in op.get("parameters", ())):
        codes.add("404")
    if op.get("requestBody"):
        codes.add("413")
    if method == "post" and (path.startswith("/api/v1/units/{unit_id}/") or path == "/api/v1/users"):
        codes |= {"409", "503"}
    if path == "/api/v1/login":
        codes |= {"401", "429"}
    if path in ("/api/v1/health", "/api/v1/stream"):
        codes.add("503")
    return codes


def document_errors(app):
    """Wrap app.openapi so the document it makes lists each operation's errors."""
    make = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        doc = make()
        doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                if "503" in responses:  # /health's own body, not an error
                    responses["503"].setdefault("content", {"application/json": {"schema": {}}})
                for code in sorted(_errors(method, path, op) - responses.keys()):
                    responses[code] = {
                        "description": WHY[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
        doc["components"]["schemas"].pop("HTTPValidationError", None)
        doc["components"]["schemas"].pop("ValidationError", None)
        return doc

    app.openapi = openapi
