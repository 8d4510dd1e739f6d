"""Push credentials: create (apn sandbox, fcm secret, gcm api key), fetch, update, list, delete.
A secret sent to Bindery never comes back in any response."""

from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioRestException

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
    cert = unique("-----BEGIN CERTIFICATE-----cert")
    key = unique("-----BEGIN PRIVATE KEY-----key")
    fcm_secret = unique("fcm-server-key-")
    gcm_key = unique("gcm-api-key-")

    apn = chat.credentials.create(type="apn", friendly_name="ios sandbox", certificate=cert, private_key=key,
                                  sandbox=True)
    assert api.last.status == 201
    assert apn.sid.startswith("CR") and apn.account_sid == bindery.account_sid
    assert (apn.type, apn.friendly_name, apn.sandbox) == ("apn", "ios sandbox", "True")
    assert isinstance(apn.date_created, datetime)
    assert apn.url == f"{bindery.base_url}/v2/Credentials/{apn.sid}"

    fcm = chat.credentials.create(type="fcm", friendly_name="android", secret=fcm_secret)
    assert api.last.status == 201
    assert (fcm.type, fcm.friendly_name) == ("fcm", "android")

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
    rotated = unique("rotated-")
    chat.credentials(fcm.sid).update(secret=rotated)
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

    assert_never_returned(api, start, cert, key, fcm_secret, gcm_key, rotated)
    for sid in (apn.sid, fcm.sid):
        assert chat.credentials(sid).delete() is True


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
    sids = [api.chat.credentials.create(type="fcm", secret=f"s{i}").sid for i in range(5)]
    start = len(api.log)
    assert [c.sid for c in api.chat.credentials.list(page_size=2)] == sids
    assert sum(1 for e in api.log[start:] if e.method == "GET") == 3
    assert [c.sid for c in api.chat.credentials.stream(page_size=4)] == sids
    assert [c.sid for c in api.chat.credentials.list(limit=2)] == sids[:2]
