"""Bindings: device registration [EXT] through the library's generic request, User Bindings and
Service Bindings through its resource API."""

import json
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from bindery_material import APNS_CERTIFICATE, APNS_CERTIFICATE_KEY
from bindery_support import ALL_MESSAGE_TYPES, MISSING_BINDING, list_error, unique


def registered(api, response, status):
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return json.loads(response.text)


def test_register_then_reregister(chat, api, service, bindery):
    cred = chat.credentials.create(type="apn", sandbox=True, certificate=APNS_CERTIFICATE,
                                   private_key=APNS_CERTIFICATE_KEY)
    address = unique("apns-token-")
    # The user does not exist yet: registering creates it, as Chat does on first connect.
    first = registered(api, api.register(service.sid, "dave@example.com", "apn", address, endpoint="dave-iphone",
                                         credential_sid=cred.sid, message_types=["new_message"]), 201)
    user = chat.services(service.sid).users("dave@example.com").fetch()
    assert first["sid"].startswith("BS")
    assert (first["identity"], first["user_sid"], first["endpoint"]) == ("dave@example.com", user.sid, "dave-iphone")
    assert (first["binding_type"], first["credential_sid"], first["message_types"]) == ("apn", cred.sid,
                                                                                        ["new_message"])
    assert first["url"] == f"{bindery.base_url}/v2/Services/{service.sid}/Users/{user.sid}/Bindings/{first['sid']}"
    assert user.is_notifiable is True

    # Same user, endpoint and type again: updated in place, same sid, 200.
    new_address = unique("apns-token-")
    second = registered(api, api.register(service.sid, user.sid, "apn", new_address, endpoint="dave-iphone",
                                          message_types=["new_message", "added_to_channel"]), 200)
    assert second["sid"] == first["sid"]
    assert set(second["message_types"]) == {"new_message", "added_to_channel"}
    assert second["date_created"] == first["date_created"]
    assert second["date_updated"] >= first["date_updated"]
    listed = chat.services(service.sid).users(user.sid).user_bindings.list()
    assert [b.sid for b in listed] == [first["sid"]]
    assert set(listed[0].message_types) == {"new_message", "added_to_channel"}

    # The same endpoint with another type is another binding; no MessageTypes means all four.
    third = registered(api, api.register(service.sid, "dave@example.com", "fcm", unique("fcm-"),
                                         endpoint="dave-iphone"), 201)
    assert third["sid"] != first["sid"]
    assert set(third["message_types"]) == ALL_MESSAGE_TYPES

    # A default endpoint is derived when none is given.
    fourth = registered(api, api.register(service.sid, "dave@example.com", "gcm", unique("gcm-")), 201)
    assert fourth["endpoint"]

    # The device token never comes back.
    for exchange in api.log:
        for token in (address, new_address):
            assert token not in exchange.text


def test_register_errors(chat, api, service):
    r = api.register(service.sid, "erin", "voip", "tok")
    assert r.status_code == 400 and json.loads(r.text)["code"] == 50209
    r = api.post(f"Services/{service.sid}/Users/erin/Bindings", {"BindingType": "apn"})
    assert r.status_code == 400  # Address is required
    r = api.register(service.sid, "erin", "apn", "tok", credential_sid="CR" + "9" * 32)
    assert r.status_code in (400, 404), r.text  # CredentialSid must exist in the account


def test_per_user_binding_limit(chat, api, service):
    # Default bindings.per_user_limit is 20: the 21st device answers 409 (code 20001).
    for i in range(20):
        registered(api, api.register(service.sid, "nina", "fcm", unique("l-"), endpoint=f"d{i}"), 201)
    r = api.register(service.sid, "nina", "fcm", unique("l-"), endpoint="d20")
    assert r.status_code == 409 and json.loads(r.text)["code"] == 20001, r.text
    # Re-registering an existing device is still fine.
    registered(api, api.register(service.sid, "nina", "fcm", unique("l-"), endpoint="d0"), 200)
    assert len(chat.services(service.sid).users("nina").user_bindings.list()) == 20


def test_user_bindings_fetch_filter_delete(chat, api, service, bindery):
    users = chat.services(service.sid).users
    apn = registered(api, api.register(service.sid, "frank", "apn", unique("a-"), endpoint="f1"), 201)
    fcm = registered(api, api.register(service.sid, "frank", "fcm", unique("f-"), endpoint="f2"), 201)
    gcm = registered(api, api.register(service.sid, "frank", "gcm", unique("g-"), endpoint="f3"), 201)
    user_sid = apn["user_sid"]
    ub = users("frank").user_bindings

    assert [b.sid for b in ub.list()] == [apn["sid"], fcm["sid"], gcm["sid"]]
    assert [b.sid for b in ub.list(binding_type=["apn", "fcm"])] == [apn["sid"], fcm["sid"]]
    assert [b.sid for b in ub.list(binding_type=["gcm"])] == [gcm["sid"]]
    assert [b.sid for b in users(user_sid).user_bindings.list(binding_type=["fcm"])] == [fcm["sid"]]
    # The page URLs keep the filter.
    meta = api.last.json()["meta"]
    assert "BindingType=fcm" in meta["url"] and "BindingType=fcm" in meta["first_page_url"]
    with pytest.raises(TwilioException) as err:
        ub.list(binding_type=["voip"])
    assert list_error(err.value) == (400, 50209)

    got = chat.services(service.sid).users("frank").user_bindings(fcm["sid"]).fetch()
    assert (got.sid, got.binding_type, got.identity, got.user_sid, got.endpoint) == (fcm["sid"], "fcm", "frank",
                                                                                      user_sid, "f2")
    assert isinstance(got.date_created, datetime)
    assert got.url == f"{bindery.base_url}/v2/Services/{service.sid}/Users/{user_sid}/Bindings/{fcm['sid']}"
    assert users(user_sid).user_bindings(fcm["sid"]).fetch().sid == fcm["sid"]

    # Another user's binding is not found under this user.
    registered(api, api.register(service.sid, "grace", "apn", unique("a-")), 201)
    with pytest.raises(TwilioRestException) as err:
        users("grace").user_bindings(fcm["sid"]).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as err:
        users("grace").user_bindings(fcm["sid"]).delete()
    assert (err.value.status, err.value.code) == (404, 20404)

    assert chat.services(service.sid).users("frank").user_bindings(fcm["sid"]).delete() is True
    assert api.last.status == 204 and api.last.text == ""
    with pytest.raises(TwilioRestException) as err:
        ub(fcm["sid"]).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as err:
        chat.services(service.sid).bindings(fcm["sid"]).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as err:
        ub(MISSING_BINDING).delete()
    assert (err.value.status, err.value.code) == (404, 20404)
    assert [b.sid for b in ub.list()] == [apn["sid"], gcm["sid"]]


def test_service_bindings(chat, api, service, bindery):
    b = chat.services(service.sid).bindings
    made = {}
    for identity, kind in [("hal", "apn"), ("hal", "fcm"), ("ivy+1@x.com", "apn"), ("jo", "gcm"), ("jo", "fcm")]:
        made[(identity, kind)] = registered(api, api.register(service.sid, identity, kind, unique("t-")), 201)["sid"]
    order = list(made.values())

    assert [x.sid for x in b.list()] == order
    assert [x.sid for x in b.list(identity=["hal", "ivy+1@x.com"])] == order[:3]
    assert [x.sid for x in b.list(binding_type=["fcm"])] == [made[("hal", "fcm")], made[("jo", "fcm")]]
    assert [x.sid for x in b.list(identity=["jo"], binding_type=["fcm", "apn"])] == [made[("jo", "fcm")]]
    assert [x.sid for x in b.list(identity=["nobody"])] == []
    with pytest.raises(TwilioException) as err:
        b.list(binding_type=["sms"])
    assert list_error(err.value) == (400, 50209)

    got = b(made[("ivy+1@x.com", "apn")]).fetch()
    assert (got.identity, got.binding_type) == ("ivy+1@x.com", "apn")
    assert got.url == f"{bindery.base_url}/v2/Services/{service.sid}/Bindings/{got.sid}"
    assert got.links["user"] == f"{bindery.base_url}/v2/Services/{service.sid}/Users/ivy+1@x.com"

    # One binding, two paths: deleted under the service, gone under the user.
    assert b(made[("hal", "apn")]).delete() is True
    assert api.last.status == 204 and api.last.text == ""
    with pytest.raises(TwilioRestException) as err:
        chat.services(service.sid).users("hal").user_bindings(made[("hal", "apn")]).fetch()
    assert err.value.code == 20404
    assert [x.sid for x in chat.services(service.sid).users("hal").user_bindings.list()] == [made[("hal", "fcm")]]
    with pytest.raises(TwilioRestException) as err:
        b(MISSING_BINDING).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)

    # Deleting a user removes its bindings.
    assert chat.services(service.sid).users("jo").delete() is True
    assert [x.sid for x in b.list(identity=["jo"])] == []
    for kind in ("gcm", "fcm"):
        with pytest.raises(TwilioRestException) as err:
            b(made[("jo", kind)]).fetch()
        assert err.value.code == 20404
    assert [x.sid for x in b.list()] == [made[("hal", "fcm")], made[("ivy+1@x.com", "apn")]]


def test_device_moves_to_another_user(chat, api, service):
    token = unique("shared-device-")
    first = registered(api, api.register(service.sid, "kim", "fcm", token, endpoint="tablet"), 201)
    keep = registered(api, api.register(service.sid, "kim", "apn", unique("x-")), 201)
    moved = registered(api, api.register(service.sid, "lee", "fcm", token, endpoint="tablet"), 201)
    assert moved["sid"] != first["sid"] and moved["identity"] == "lee"
    users = chat.services(service.sid).users
    assert [b.sid for b in users("kim").user_bindings.list()] == [keep["sid"]]
    assert [b.sid for b in users("lee").user_bindings.list()] == [moved["sid"]]
    with pytest.raises(TwilioRestException) as err:
        users("kim").user_bindings(first["sid"]).fetch()
    assert err.value.code == 20404
    assert [b.sid for b in chat.services(service.sid).bindings.list(binding_type=["fcm"])] == [moved["sid"]]


def test_binding_paging(chat, api, service):
    sids = [registered(api, api.register(service.sid, "mia", "fcm", unique("p-"), endpoint=f"dev-{i}"), 201)["sid"]
            for i in range(5)]
    ub = chat.services(service.sid).users("mia").user_bindings
    start = len(api.log)
    assert [b.sid for b in ub.list(page_size=2)] == sids
    assert sum(1 for e in api.log[start:] if e.method == "GET") == 3
    assert [b.sid for b in ub.stream(page_size=2)] == sids
    sb = chat.services(service.sid).bindings
    assert [b.sid for b in sb.list(page_size=2, identity=["mia"])] == sids
    assert [b.sid for b in sb.stream(page_size=3, binding_type=["fcm"])] == sids
    # next_page_url keeps the filters.
    pages = [e.json()["meta"] for e in api.log[-2:]]
    assert "Identity" not in pages[0]["url"] and "BindingType=fcm" in pages[0]["next_page_url"]
    # PageSize over the maximum (50 for binding lists) is clamped, not rejected.
    assert [b.sid for b in ub.list(page_size=500)] == sids
    assert api.last.json()["meta"]["page_size"] == 50
