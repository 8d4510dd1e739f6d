"""Push credentials: create (apn sandbox, fcm secret, gcm api key), fetch, update, list, delete.
A secret sent to Bindery never comes back in any response; what cannot push is refused (400),
and the body tells what it pushes with ([EXT] auth, topic, expires)."""

import json
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioRestException

from bindery_material import (APNS_BUNDLE_ID, APNS_CERTIFICATE, APNS_CERTIFICATE_KEY, base64_line,
                              service_account)
from bindery_support import MISSING_CREDENTIAL, unique
from bindery_support import Api

SECRET_FIELDS = {"certificate", "private_key", "secret", "api_key"}


def assert_never_returned(api: Api, start: int, *secrets: str) -> None:
    for exchange in api.log[start:]:
        for secret in secrets:
            assert secret not in exchange.text, f"{exchange.method} {exchange.url} returned a secret"
        body = exchange.json() if exchange.text else {}
        items = body.get("credentials", [body]) if isinstance(body, dict) else []
        for item in items:
            assert not SECRET_FIELDS & set(item), f"secret field in {item}"


def test_credentials_lifecycle(chat, api, bindery):
    start = len(api.log)
    cert, key = APNS_CERTIFICATE, APNS_CERTIFICATE_KEY
    fcm_secret = service_account(unique("fcm-"))
    gcm_key = service_account(unique("gcm-"))

    apn = chat.credentials.create(type="apn", friendly_name="ios sandbox", certificate=cert, private_key=key,
                                  sandbox=True)
    assert api.last.status == 201
    assert apn.sid.startswith("CR") and apn.account_sid == bindery.account_sid
    assert (apn.type, apn.friendly_name, apn.sandbox) == ("apn", "ios sandbox", "True")
    assert isinstance(apn.date_created, datetime)
    assert apn.url == f"{bindery.base_url}/v2/Credentials/{apn.sid}"
    # [EXT] The helper library does not know these fields; the body has them.
    body = api.last.json()
    assert (body["auth"], body["topic"]) == ("certificate", APNS_BUNDLE_ID)
    assert body["expires"].startswith("2126-")

    fcm = chat.credentials.create(type="fcm", friendly_name="android", secret=fcm_secret)
    assert api.last.status == 201
    assert (fcm.type, fcm.friendly_name) == ("fcm", "android")
    assert api.last.json()["auth"] == "service_account"

    gcm = chat.credentials.create(type="gcm", api_key=gcm_key)
    assert gcm.type == "gcm" and gcm.friendly_name is None

    fetched = chat.credentials(apn.sid).fetch()
    assert (fetched.sid, fetched.type, fetched.sandbox, fetched.friendly_name) == (apn.sid, "apn", "True",
                                                                                   "ios sandbox")
    assert chat.credentials(fcm.sid).fetch().type == "fcm"

    updated = chat.credentials(apn.sid).update(friendly_name="ios production", sandbox=False)
    assert api.last.status == 200
    assert (updated.sid, updated.friendly_name, updated.sandbox) == (apn.sid, "ios production", "False")
    assert updated.date_updated >= apn.date_updated
    rotated = service_account(unique("rotated-"))
    chat.credentials(fcm.sid).update(secret=rotated)
    assert api.last.json()["topic"] == json.loads(rotated)["project_id"]
    assert chat.credentials(apn.sid).fetch().sandbox == "False"

    listed = [c.sid for c in chat.credentials.list()]
    mine = [s for s in listed if s in {apn.sid, fcm.sid, gcm.sid}]
    assert mine == [apn.sid, fcm.sid, gcm.sid]  # creation order
    assert len(listed) == len(set(listed))

    assert chat.credentials(gcm.sid).delete() is True
    assert api.last.status == 204 and api.last.text == ""
    with pytest.raises(TwilioRestException) as err:
        chat.credentials(gcm.sid).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    assert gcm.sid not in [c.sid for c in chat.credentials.list()]

    assert_never_returned(api, start, *(base64_line(s) for s in (cert, key, fcm_secret, gcm_key, rotated)))
    for sid in (apn.sid, fcm.sid):
        assert chat.credentials(sid).delete() is True


def test_what_cannot_push_is_refused_naming_the_field(chat, api):
    listed = [c.sid for c in chat.credentials.list()]
    for create, field in (
        (lambda: chat.credentials.create(type="fcm", secret="AAAA-legacy-server-key"), "Secret"),
        (lambda: chat.credentials.create(type="gcm", api_key="AIza-legacy-key"), "ApiKey"),
        (lambda: chat.credentials.create(type="apn", certificate=APNS_CERTIFICATE, private_key="not a key"),
         "PrivateKey"),
        (lambda: chat.credentials.create(type="apn", certificate="not a certificate",
                                         private_key=APNS_CERTIFICATE_KEY), "Certificate"),
    ):
        with pytest.raises(TwilioRestException) as err:
            create()
        assert (err.value.status, err.value.code) == (400, 20001)
        assert field in err.value.msg, err.value.msg
    assert [c.sid for c in chat.credentials.list()] == listed, "nothing was stored"

    made = chat.credentials.create(type="fcm", secret=service_account())
    with pytest.raises(TwilioRestException) as err:
        chat.credentials(made.sid).update(secret="AAAA-legacy-server-key")
    assert (err.value.status, err.value.code) == (400, 20001)
    assert chat.credentials(made.sid).fetch().date_updated == made.date_updated
    assert chat.credentials(made.sid).delete() is True


def test_missing_credential(chat):
    for call in (
        lambda: chat.credentials(MISSING_CREDENTIAL).fetch(),
        lambda: chat.credentials(MISSING_CREDENTIAL).update(friendly_name="x"),
        lambda: chat.credentials(MISSING_CREDENTIAL).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (404, 20404)


def test_credentials_paging_in_creation_order(bindery):
    acct = bindery.create_account()
    api = Api(bindery, acct["account_sid"], acct["auth_token"])
    sids = [api.chat.credentials.create(type="fcm", secret=service_account(f"p{i}")).sid for i in range(5)]
    start = len(api.log)
    assert [c.sid for c in api.chat.credentials.list(page_size=2)] == sids
    assert sum(1 for e in api.log[start:] if e.method == "GET") == 3
    assert [c.sid for c in api.chat.credentials.stream(page_size=4)] == sids
    assert [c.sid for c in api.chat.credentials.list(limit=2)] == sids[:2]
