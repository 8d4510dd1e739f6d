"""The response validator itself: a good body passes, and each kind of broken body fails.

Without this a validator that accepts everything would make the whole suite green.
Runs without Bindery.
"""

import copy
import json

import pytest

from bindery_contract import Contract

C = Contract()
ORIGIN = "http://127.0.0.1:1234"
S = "IS" + "a" * 32
U = "US" + "b" * 32
B = "BS" + "c" * 32
CR = "CR" + "d" * 32
AC = "AC" + "e" * 32
UB_URL = f"{ORIGIN}/v2/Services/{S}/Users/{U}/Bindings/{B}"

USER_BINDING = {
    "sid": B,
    "account_sid": AC,
    "service_sid": S,
    "date_created": "2024-01-02T03:04:05Z",
    "date_updated": "2024-01-02T03:04:05Z",
    "endpoint": "alice:apn:0123",
    "identity": "alice",
    "user_sid": U,
    "credential_sid": CR,
    "binding_type": "apn",
    "message_types": ["new_message", "added_to_channel"],
    "url": UB_URL,
}

SERVICE_BINDING = dict(USER_BINDING)
del SERVICE_BINDING["user_sid"]
SERVICE_BINDING["url"] = f"{ORIGIN}/v2/Services/{S}/Bindings/{B}"
SERVICE_BINDING["links"] = {"user": f"{ORIGIN}/v2/Services/{S}/Users/alice"}

CREDENTIAL = {
    "sid": CR,
    "account_sid": AC,
    "friendly_name": None,
    "type": "apn",
    "sandbox": "True",
    "date_created": "2024-01-02T03:04:05Z",
    "date_updated": "2024-01-02T03:04:05Z",
    "url": f"{ORIGIN}/v2/Credentials/{CR}",
    # [EXT] CONTRACT §6.2.
    "auth": "certificate",
    "topic": "com.example.chat",
    "expires": "2030-01-02T03:04:05Z",
    "healthy": True,
}


def _notif(extra=None):
    d = {"enabled": False, "template": None, "sound": None}
    d.update(extra or {})
    return d


SERVICE = {
    "sid": S, "account_sid": AC, "friendly_name": "x",
    "date_created": "2024-01-02T03:04:05Z", "date_updated": "2024-01-02T03:04:05Z",
    "default_service_role_sid": None, "default_channel_role_sid": None, "default_channel_creator_role_sid": None,
    "read_status_enabled": True, "reachability_enabled": False, "typing_indicator_timeout": 5,
    "consumption_report_interval": 10, "limits": {"channel_members": 100}, "pre_webhook_url": None,
    "post_webhook_url": None, "webhook_method": None, "webhook_filters": [], "pre_webhook_retry_count": 0,
    "post_webhook_retry_count": 0,
    "notifications": {
        "log_enabled": False, "new_message": _notif({"badge_count_enabled": False}),
        "added_to_channel": _notif(), "invited_to_channel": _notif(), "removed_from_channel": _notif(),
    },
    "media": {"size_limit_mb": 150}, "url": f"{ORIGIN}/v2/Services/{S}",
    "links": {k: f"{ORIGIN}/v2/Services/{S}/{k.capitalize()}" for k in ("channels", "users", "roles", "bindings")},
}


def page(key, items, path):
    url = f"{ORIGIN}{path}?PageSize=50&Page=0"
    return {
        "meta": {"page": 0, "page_size": 50, "first_page_url": url, "previous_page_url": None, "url": url,
                 "next_page_url": None, "key": key},
        key: items,
    }


def problems(method, path, status, body, headers=None):
    text = body if isinstance(body, str) else json.dumps(body)
    return C.problems(method, ORIGIN + path, status, text, headers, ORIGIN)


UB_PATH = f"/v2/Services/{S}/Users/{U}/Bindings/{B}"


def test_good_bodies_pass():
    assert problems("GET", UB_PATH, 200, USER_BINDING) == []
    assert problems("GET", f"/v2/Services/{S}/Users/alice@x.com/Bindings/{B}", 200, USER_BINDING) == []
    assert problems("POST", f"/v2/Services/{S}/Users/alice/Bindings", 201, USER_BINDING) == []
    assert problems("POST", f"/v2/Services/{S}/Users/alice/Bindings", 200, USER_BINDING) == []
    assert problems("GET", f"/v2/Services/{S}/Bindings/{B}", 200, SERVICE_BINDING) == []
    assert problems("GET", f"/v2/Credentials/{CR}", 200, CREDENTIAL) == []
    unread = dict(CREDENTIAL, auth=None, topic=None, expires=None)  # stored before reading
    assert problems("GET", f"/v2/Credentials/{CR}", 200, unread) == []
    assert problems("GET", f"/v2/Services/{S}", 200, SERVICE) == []
    assert problems("GET", f"/v2/Services/{S}/Users/{U}/Bindings", 200,
                    page("bindings", [USER_BINDING], f"/v2/Services/{S}/Users/{U}/Bindings")) == []
    assert problems("DELETE", UB_PATH, 204, "") == []
    err = {"code": 20404, "message": "not found", "more_info": "https://www.twilio.com/docs/errors/20404",
           "status": 404}
    assert problems("GET", UB_PATH, 404, err) == []
    assert problems("GET", "/v2/Services", 401, dict(err, code=20003, status=401,
                    more_info="https://www.twilio.com/docs/errors/20003"),
                    {"WWW-Authenticate": 'Basic realm="Bindery"'}) == []


def mutated(base, path, value):
    body = copy.deepcopy(base)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


BROKEN_USER_BINDINGS = [
    ("integer date", ("date_created",), 1704164645),
    ("date with fraction", ("date_created",), "2024-01-02T03:04:05.123Z"),
    ("date with offset", ("date_updated",), "2024-01-02T03:04:05+00:00"),
    ("date without time", ("date_updated",), "2024-01-02"),
    ("missing identity", ("identity",), KeyError),
    ("missing url", ("url",), KeyError),
    ("leaked address", ("address",), "device-token-123"),
    ("null binding_type", ("binding_type",), None),
    ("unknown binding_type", ("binding_type",), "voip"),
    ("sid of wrong kind", ("sid",), "US" + "c" * 32),
    ("short sid", ("sid",), "BS123"),
    ("message_types not a list", ("message_types",), "new_message"),
    ("unknown message type", ("message_types",), ["new_message", "poke"]),
    ("endpoint integer", ("endpoint",), 7),
    ("relative url", ("url",), f"/v2/Services/{S}/Users/{U}/Bindings/{B}"),
    ("url on another origin", ("url",), f"https://chat.twilio.com/v2/Services/{S}/Users/{U}/Bindings/{B}"),
]


@pytest.mark.parametrize("what,path,value", BROKEN_USER_BINDINGS, ids=[b[0] for b in BROKEN_USER_BINDINGS])
def test_broken_user_binding_fails(what, path, value):
    assert problems("GET", UB_PATH, 200, mutated(USER_BINDING, path, value)), what


BROKEN_OTHERS = [
    ("credential sandbox boolean", f"/v2/Credentials/{CR}", CREDENTIAL, ("sandbox",), True),
    ("credential leaks secret", f"/v2/Credentials/{CR}", CREDENTIAL, ("secret",), "s3cret"),
    ("credential unknown type", f"/v2/Credentials/{CR}", CREDENTIAL, ("type",), "sms"),
    ("credential unknown auth", f"/v2/Credentials/{CR}", CREDENTIAL, ("auth",), "password"),
    ("credential expires not a date", f"/v2/Credentials/{CR}", CREDENTIAL, ("expires",), 1893553445),
    ("credential missing topic", f"/v2/Credentials/{CR}", CREDENTIAL, ("topic",), KeyError),
    ("credential shows key_id", f"/v2/Credentials/{CR}", CREDENTIAL, ("key_id",), "ABC123DEFG"),
    ("service typing_indicator_timeout null", f"/v2/Services/{S}", SERVICE, ("typing_indicator_timeout",), None),
    ("service retry count string", f"/v2/Services/{S}", SERVICE, ("pre_webhook_retry_count",), "0"),
    ("service enabled as string", f"/v2/Services/{S}", SERVICE, ("notifications", "new_message", "enabled"), "true"),
    ("service missing notifications.log_enabled", f"/v2/Services/{S}", SERVICE, ("notifications", "log_enabled"),
     KeyError),
    ("service missing links.bindings", f"/v2/Services/{S}", SERVICE, ("links", "bindings"), KeyError),
    ("service binding missing links", f"/v2/Services/{S}/Bindings/{B}", SERVICE_BINDING, ("links",), KeyError),
    ("service binding with user_sid", f"/v2/Services/{S}/Bindings/{B}", SERVICE_BINDING, ("user_sid",), U),
]


@pytest.mark.parametrize("what,path,base,field,value", BROKEN_OTHERS, ids=[b[0] for b in BROKEN_OTHERS])
def test_broken_resource_fails(what, path, base, field, value):
    assert problems("GET", path, 200, mutated(base, field, value)), what


LIST_PATH = f"/v2/Services/{S}/Users/{U}/Bindings"
GOOD_PAGE = page("bindings", [USER_BINDING], LIST_PATH)
BROKEN_PAGES = [
    ("no meta.key", ("meta", "key"), KeyError),
    ("meta.key names nothing", ("meta", "key"), "users"),
    ("no meta", ("meta",), KeyError),
    ("no array", ("bindings",), KeyError),
    ("page as string", ("meta", "page"), "0"),
    ("relative next_page_url", ("meta", "next_page_url"), "/v2/x?Page=1"),
    ("bad item inside", ("bindings", 0, "date_created"), 0),
]


@pytest.mark.parametrize("what,path,value", BROKEN_PAGES, ids=[b[0] for b in BROKEN_PAGES])
def test_broken_page_fails(what, path, value):
    assert problems("GET", LIST_PATH, 200, mutated(GOOD_PAGE, path, value)), what


def test_204_with_a_body_fails():
    assert problems("DELETE", UB_PATH, 204, "{}")
    assert problems("DELETE", UB_PATH, 204, "null")


def test_unlisted_status_or_route_fails():
    assert problems("GET", UB_PATH, 201, USER_BINDING)  # fetch answers 200 only
    assert problems("POST", "/v2/Services", 200, SERVICE)  # create answers 201
    assert problems("GET", "/v2/Nope", 200, {})


BROKEN_ERRORS = [
    ("rfc9457 shape", {"type": "about:blank", "title": "Not Found", "code": 20404, "status": 404,
                       "message": "x", "more_info": "https://www.twilio.com/docs/errors/20404"}),
    ("missing more_info", {"code": 20404, "message": "x", "status": 404}),
    ("wrong more_info", {"code": 20404, "message": "x", "status": 404, "more_info": "https://x/20404"}),
    ("status mismatch", {"code": 20404, "message": "x", "status": 400,
                         "more_info": "https://www.twilio.com/docs/errors/20404"}),
    ("code as string", {"code": "20404", "message": "x", "status": 404,
                        "more_info": "https://www.twilio.com/docs/errors/20404"}),
    ("not json", "Not Found"),
]


@pytest.mark.parametrize("what,body", BROKEN_ERRORS, ids=[b[0] for b in BROKEN_ERRORS])
def test_broken_error_fails(what, body):
    assert problems("GET", UB_PATH, 404, body), what


def test_401_needs_www_authenticate():
    body = {"code": 20003, "message": "x", "status": 401, "more_info": "https://www.twilio.com/docs/errors/20003"}
    assert problems("GET", "/v2/Services", 401, body, {})
