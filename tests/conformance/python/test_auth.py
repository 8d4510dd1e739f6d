"""Authentication (auth token, API keys) and account isolation, as the library sees them."""

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from bindery_material import service_account
from bindery_support import Api, list_error, unique


def expect_401(call):
    with pytest.raises(TwilioRestException) as err:
        call()
    assert (err.value.status, err.value.code) == (401, 20003)


def test_bad_auth_token(bindery, api):
    bad = Api(bindery, bindery.account_sid, "0" * 32)
    expect_401(lambda: bad.chat.services.create(friendly_name="nope"))
    expect_401(lambda: bad.chat.credentials("CR" + "0" * 32).fetch())
    with pytest.raises(TwilioException) as err:
        bad.chat.services.list()
    assert list_error(err.value) == (401, 20003)
    assert bad.last.headers.get("WWW-Authenticate", "").startswith("Basic")
    unknown = Api(bindery, "AC" + "f" * 32, bindery.auth_token)
    expect_401(lambda: unknown.chat.services.create(friendly_name="nope"))


def test_api_key_signs_in_as_its_account_until_revoked(bindery, chat):
    key = bindery.create_key(bindery.account_sid)
    assert key["sid"].startswith("SK")
    keyed = Api(bindery, key["sid"], key["secret"], bindery.account_sid)
    svc = keyed.chat.services.create(friendly_name=unique("via key "))
    assert svc.account_sid == bindery.account_sid
    # The same resource, seen with the account's own token.
    assert chat.services(svc.sid).fetch().friendly_name == svc.friendly_name
    assert svc.sid in [s.sid for s in keyed.chat.services.list()]
    user = keyed.chat.services(svc.sid).users.create(identity="keyed")
    assert user.account_sid == bindery.account_sid

    # A wrong secret for a real key fails.
    wrong = Api(bindery, key["sid"], "x" + key["secret"][1:], bindery.account_sid)
    expect_401(lambda: wrong.chat.services(svc.sid).fetch())

    bindery.revoke_key(key["sid"])
    expect_401(lambda: keyed.chat.services(svc.sid).fetch())
    expect_401(lambda: keyed.chat.services.create(friendly_name="after revoke"))
    # The account's own token still works.
    assert chat.services(svc.sid).fetch().sid == svc.sid


def test_other_accounts_resources_are_not_found(chat, api, other_api, service):
    user = chat.services(service.sid).users.create(identity="private")
    r = api.register(service.sid, "private", "apn", unique("t-"))
    binding_sid = api.last.json()["sid"]
    assert r.status_code == 201
    cred = chat.credentials.create(type="fcm", secret=service_account())
    other = other_api.chat

    for call in (
        lambda: other.services(service.sid).fetch(),
        lambda: other.services(service.sid).update(friendly_name="stolen"),
        lambda: other.services(service.sid).delete(),
        lambda: other.services(service.sid).users(user.sid).fetch(),
        lambda: other.services(service.sid).users("private").delete(),
        lambda: other.services(service.sid).bindings(binding_sid).fetch(),
        lambda: other.services(service.sid).users("private").user_bindings(binding_sid).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert err.value.status == 404 and err.value.code in (20404, 50050), err.value
    for call in (
        lambda: other.credentials(cred.sid).fetch(),
        lambda: other.credentials(cred.sid).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioException) as err:
        other.services(service.sid).bindings.list()
    assert list_error(err.value)[0] == 404
    r = other_api.register(service.sid, "intruder", "apn", unique("t-"))
    assert r.status_code == 404, r.text
    assert service.sid not in [s.sid for s in other.services.list()]
    assert cred.sid not in [c.sid for c in other.credentials.list()]

    # Nothing changed for the owner.
    assert chat.services(service.sid).fetch().friendly_name == service.friendly_name
    assert chat.services(service.sid).users("private").user_bindings(binding_sid).fetch().sid == binding_sid
    assert chat.credentials(cred.sid).fetch().sid == cred.sid
