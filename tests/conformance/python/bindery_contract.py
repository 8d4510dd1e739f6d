"""Checks every HTTP response the Twilio helper library receives against the wire contract.

The source of truth is Twilio's OpenAPI 3.0 spec for chat v2, vendored at
crates/http/openapi/twilio_chat_v2.json, read with the rules of shared/CONTRACT.md:

* OpenAPI 3.0 `nullable: true` becomes JSON Schema `type: [T, "null"]` (and `null` joins an enum);
  a property without `nullable` (e.g. `typing_indicator_timeout`, `binding_type`) must not be null.
* "every field from the spec present": each object schema that lists properties requires all of
  them, and allows no others (so a leaked push address or secret fails).
* `format: date-time` must be exactly `YYYY-MM-DDTHH:MM:SSZ`; `format: uri` an absolute http(s) URL;
  `format: uri-map` an object whose values are such URLs.
* A list page needs its `meta` (all seven fields, `meta.key` naming the array) and the array.
* 204 has an empty body; an error body is exactly {code, message, more_info, status}.

A few facts the spec leaves open but CONTRACT.md fixes (the shape of a Service's `notifications`,
the names under `links`) are added as overlays, and the [EXT] device registration
(`POST .../Users/{UserSid}/Bindings`, 201 or 200) answers the User Binding body. The [EXT] fields
Bindery adds to Twilio's bodies (a credential's `auth`, `topic`, `expires`) are read from
crates/http/openapi/extensions.json and merged in as `/openapi.json` merges them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import jsonschema

SPEC_PATH = Path(__file__).resolve().parents[3] / "crates" / "http" / "openapi" / "twilio_chat_v2.json"
EXTENSIONS_PATH = SPEC_PATH.with_name("extensions.json")

DATE_TIME_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
URI_RE = r"^https?://[^\s/?#]+(/[^\s]*)?$"
WEBHOOK_KEYS = {"pre_webhook_url", "post_webhook_url"}
ERROR_KEYS = {"code", "message", "more_info", "status"}

# Keys of OpenAPI schema objects that carry no validation meaning here.
_DROP = {"description", "x-twilio", "example", "examples", "nullable", "default", "format", "title"}

USER_BINDING_REF = {"$ref": "#/$defs/chat.v2.service.user.user_binding"}

# [EXT] operations that Twilio's spec does not list, with the body CONTRACT.md gives them.
EXTENSIONS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings", "post"): {
        "201": USER_BINDING_REF,
        "200": USER_BINDING_REF,
    },
}


def _merge(target: Any, added: Any) -> Any:
    """`added` merged into `target` as crates/http/src/openapi.rs does: objects key by key,
    anything else replaced."""
    if isinstance(target, dict) and isinstance(added, dict):
        for key, value in added.items():
            target[key] = _merge(target[key], value) if key in target else value
        return target
    return added


def _with_extensions(schemas: Dict[str, Any], extensions_path: Path) -> Dict[str, Any]:
    """Twilio's schemas with the [EXT] fields Bindery adds to them (its own schemas, for its
    own operations, are not needed here)."""
    added = json.loads(Path(extensions_path).read_text())["components"]["schemas"]
    for name, schema in added.items():
        if name in schemas:
            _merge(schemas[name], schema)
    return schemas


def _nullable(schema: Dict[str, Any]) -> Dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "type" in schema:
        t = schema["type"]
        schema["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = list(schema["enum"]) + [None]
    return schema


def convert(node: Any) -> Any:
    """OpenAPI 3.0 schema object -> strict JSON Schema (draft 2020-12)."""
    if isinstance(node, list):
        return [convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: Dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key == "$ref":
            prefix = "#/components/schemas/"
            if not value.startswith(prefix):
                raise ValueError(f"unexpected $ref {value!r}")
            out[key] = "#/$defs/" + value[len(prefix):]
        else:
            out[key] = convert(value)
    fmt = node.get("format")
    if fmt == "date-time":
        out["pattern"] = DATE_TIME_RE
    elif fmt == "uri":
        out.setdefault("pattern", URI_RE)
    elif fmt == "uri-map":
        out["additionalProperties"] = {"type": "string", "pattern": URI_RE}
    elif fmt not in (None, "int64", "int32"):
        raise ValueError(f"format {fmt!r} is not handled; teach convert() about it")
    if "properties" in out:
        out.setdefault("type", "object")
        out["required"] = sorted(out["properties"])
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        out = _nullable(out)
    return out


def _notification(extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    props = {
        "enabled": {"type": "boolean"},
        "template": {"type": ["string", "null"]},
        "sound": {"type": ["string", "null"]},
    }
    props.update(extra or {})
    return {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False}


def _links(*names: str) -> Dict[str, Any]:
    return {
        "type": "object",
        "properties": {n: {"type": "string", "pattern": URI_RE} for n in names},
        "required": list(names),
        "additionalProperties": False,
    }


def _apply_overlays(defs: Dict[str, Any]) -> None:
    """CONTRACT.md §3 fixes what the spec leaves as a free-form object."""
    service = defs["chat.v2.service"]["properties"]
    notif_props = {
        "log_enabled": {"type": "boolean"},
        "new_message": _notification({"badge_count_enabled": {"type": "boolean"}}),
        "added_to_channel": _notification(),
        "invited_to_channel": _notification(),
        "removed_from_channel": _notification(),
    }
    service["notifications"] = {
        "type": "object",
        "properties": notif_props,
        "required": sorted(notif_props),
        "additionalProperties": False,
    }
    service["links"] = _links("channels", "users", "roles", "bindings")
    defs["chat.v2.service.user"]["properties"]["links"] = _links("user_channels", "user_bindings")
    defs["chat.v2.service.binding"]["properties"]["links"] = _links("user")
    for name in ("chat.v2.service.user.user_binding", "chat.v2.service.binding"):
        mt = defs[name]["properties"]["message_types"]
        mt["items"] = {
            "type": "string",
            "enum": ["new_message", "added_to_channel", "invited_to_channel", "removed_from_channel"],
        }
        mt["uniqueItems"] = True
    # A credential's `type` must be one of the push services (already an enum via $ref), and
    # `sandbox` is a string "True"/"False" (or null for non-apn credentials).
    defs["chat.v2.credential"]["properties"]["sandbox"] = {"type": ["string", "null"], "enum": ["True", "False", None]}


class ContractError(AssertionError):
    """A response that breaks the contract."""


class Contract:
    def __init__(self, spec_path: Path = SPEC_PATH, extensions_path: Path = EXTENSIONS_PATH):
        spec = json.loads(Path(spec_path).read_text())
        schemas = _with_extensions(spec["components"]["schemas"], extensions_path)
        self.defs: Dict[str, Any] = {name: convert(s) for name, s in schemas.items()}
        _apply_overlays(self.defs)
        # (template, method) -> {status: json schema or None (no body)}
        self.operations: Dict[Tuple[str, str], Dict[str, Any]] = {}
        for template, item in spec["paths"].items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                statuses: Dict[str, Any] = {}
                for status, response in op["responses"].items():
                    content = response.get("content", {}).get("application/json")
                    statuses[status] = convert(content["schema"]) if content else None
                self.operations[(template, method.lower())] = statuses
        for key, statuses in EXTENSIONS.items():
            self.operations.setdefault(key, {}).update(statuses)
        self._routes: List[Tuple[int, str, "re.Pattern[str]"]] = []
        for template in {t for (t, _m) in self.operations}:
            literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
            rx = "^" + "/".join("[^/]+" if seg.startswith("{") else re.escape(seg) for seg in template.split("/")) + "$"
            self._routes.append((literal, template, re.compile(rx)))
        self._routes.sort(key=lambda r: -r[0])
        self._validators: Dict[int, jsonschema.protocols.Validator] = {}

    # -- lookup -------------------------------------------------------------------------------
    def template_for(self, path: str) -> Optional[str]:
        for _literal, template, rx in self._routes:
            if rx.match(path):
                return template
        return None

    def schema_for(self, template: str, method: str, status: int) -> Tuple[bool, Optional[Dict[str, Any]]]:
        statuses = self.operations.get((template, method.lower()))
        if statuses is None or str(status) not in statuses:
            return False, None
        return True, statuses[str(status)]

    def validator(self, schema: Dict[str, Any]):
        key = id(schema)
        if key not in self._validators:
            root = dict(schema)
            root["$defs"] = self.defs
            root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            jsonschema.Draft202012Validator.check_schema(root)
            self._validators[key] = jsonschema.Draft202012Validator(root)
        return self._validators[key]

    # -- checks -------------------------------------------------------------------------------
    def problems(
        self,
        method: str,
        url: str,
        status: int,
        text: str,
        headers: Optional[Dict[str, str]] = None,
        origin: Optional[str] = None,
    ) -> List[str]:
        """Every way this response breaks the contract; empty when it keeps it."""
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        path = urlsplit(url).path
        template = self.template_for(path)
        if status >= 400:
            out = self.error_problems(status, text)
            if status == 401:
                www = headers.get("www-authenticate", "")
                if not www.lower().startswith("basic"):
                    out.append(f"401 without a Basic WWW-Authenticate header (got {www!r})")
            return out
        if template is None:
            return [f"{method} {path}: no operation in the spec or the contract's extensions"]
        known, schema = self.schema_for(template, method, status)
        if not known:
            return [f"{method} {template} answered {status}, which the spec does not list for it"]
        if status == 204 or schema is None:
            return [] if text == "" else [f"{status} must have an empty body, got {text[:200]!r}"]
        try:
            body = json.loads(text)
        except ValueError as e:
            return [f"{status} body is not JSON ({e}): {text[:200]!r}"]
        out = [
            f"{method} {template} {status}: {'/'.join(map(str, err.absolute_path)) or '(body)'}: {err.message}"
            for err in sorted(self.validator(schema).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if isinstance(body, dict) and isinstance(body.get("meta"), dict):
            arrays = [k for k in body if k != "meta"]
            if body["meta"].get("key") not in arrays:
                out.append(f"meta.key {body['meta'].get('key')!r} does not name the array (keys: {arrays})")
        if origin is not None:
            out.extend(_origin_problems(body, origin))
        return out

    @staticmethod
    def error_problems(status: int, text: str) -> List[str]:
        try:
            body = json.loads(text)
        except ValueError:
            return [f"error {status} body is not JSON: {text[:200]!r}"]
        if not isinstance(body, dict):
            return [f"error {status} body is not an object: {body!r}"]
        out = []
        if set(body) != ERROR_KEYS:
            out.append(f"error body keys {sorted(body)} != {sorted(ERROR_KEYS)}")
        code = body.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            out.append(f"error code {code!r} is not an integer")
        if not isinstance(body.get("message"), str) or not body.get("message"):
            out.append(f"error message {body.get('message')!r} is not a non-empty string")
        if body.get("more_info") != f"https://www.twilio.com/docs/errors/{code}":
            out.append(f"more_info {body.get('more_info')!r} is not https://www.twilio.com/docs/errors/{code}")
        if body.get("status") != status or isinstance(body.get("status"), bool):
            out.append(f"error body status {body.get('status')!r} != HTTP status {status}")
        return out


def _origin_problems(body: Any, origin: str, where: str = "") -> List[str]:
    """`url`, `*_url` and `links.*` are absolute URLs on Bindery's own origin."""
    out: List[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            here = f"{where}/{key}" if where else key
            # pre/post_webhook_url are the customer's own webhooks, not Bindery's URLs.
            is_url = (key == "url" or key.endswith("_url") or where.endswith("links")) and key not in WEBHOOK_KEYS
            if is_url and isinstance(value, str) and not value.startswith(origin + "/v2/"):
                out.append(f"{here}: {value!r} is not on Bindery's origin {origin}")
            elif isinstance(value, (dict, list)):
                out.extend(_origin_problems(value, origin, here))
    elif isinstance(body, list):
        for i, item in enumerate(body):
            out.extend(_origin_problems(item, origin, f"{where}/{i}"))
    return out
