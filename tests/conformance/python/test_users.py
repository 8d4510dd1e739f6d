"""Users: create, fetch by SID and by identity (as the helper library puts them in the path,
unencoded), update, list, delete, paging."""

import json
from datetime import datetime

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from bindery_support import MISSING_SERVICE, MISSING_USER, list_error, unique

ROLE = "RL" + "1" * 32

# The library does not encode path values: "@" and "+" arrive raw, the space as %20 (by
# requests), the non-ASCII letter as UTF-8 percent-encoded.
IDENTITIES = ["alice@example.com", "user+1@x.com", "first last", "zoë", "日本"]


def test_create_fetch_update_delete(chat, api, service, bindery):
    users = chat.services(service.sid).users
    attrs = json.dumps({"team": "blue", "n": 1})
    user = users.create(identity="carol", friendly_name="Carol", attributes=attrs, role_sid=ROLE)
    assert api.last.status == 201
    assert user.sid.startswith("US") and len(user.sid) == 34
    assert (user.identity, user.friendly_name, user.role_sid) == ("carol", "Carol", ROLE)
    assert json.loads(user.attributes) == {"team": "blue", "n": 1}
    assert (user.account_sid, user.service_sid) == (bindery.account_sid, service.sid)
    assert user.joined_channels_count == 0
    assert isinstance(user.date_created, datetime)
    assert user.url == f"{bindery.base_url}/v2/Services/{service.sid}/Users/{user.sid}"
    assert user.links["user_bindings"] == f"{user.url}/Bindings"
    assert user.links["user_channels"] == f"{user.url}/Channels"

    by_sid = users(user.sid).fetch()
    by_identity = users("carol").fetch()
    for got in (by_sid, by_identity):
        assert (got.sid, got.identity, got.friendly_name, got.role_sid) == (user.sid, "carol", "Carol", ROLE)
        assert got.is_notifiable is False  # no binding yet
        assert got.url == user.url  # the SID, even when fetched by identity

    updated = users("carol").update(friendly_name="Carol C", attributes='{"team": "red"}')
    assert api.last.status == 200
    assert (updated.sid, updated.identity, updated.friendly_name) == (user.sid, "carol", "Carol C")
    assert json.loads(updated.attributes) == {"team": "red"}
    assert updated.role_sid == ROLE  # left out, so kept
    assert updated.date_updated >= user.date_updated
    users(user.sid).update(role_sid="RL" + "2" * 32)
    assert users(user.sid).fetch().role_sid == "RL" + "2" * 32

    listed = users.list()
    assert [u.sid for u in listed] == [user.sid]
    assert listed[0].is_notifiable is None  # null in lists

    assert users("carol").delete() is True
    assert api.last.status == 204 and api.last.text == ""
    for ref in (user.sid, "carol"):
        with pytest.raises(TwilioRestException) as err:
            users(ref).fetch()
        assert (err.value.status, err.value.code) == (404, 50200)
    assert users.list() == []


def test_identities_with_special_characters(chat, service):
    users = chat.services(service.sid).users
    created = {identity: users.create(identity=identity, friendly_name=f"name of {identity}")
               for identity in IDENTITIES}
    for identity, user in created.items():
        assert user.identity == identity
        got = users(identity).fetch()
        assert (got.sid, got.identity) == (user.sid, identity), identity
        assert users(user.sid).fetch().identity == identity
        assert users(identity).update(friendly_name=f"renamed {identity}").friendly_name == f"renamed {identity}"
    assert [u.identity for u in users.list()] == IDENTITIES
    # Identities are case-sensitive, and "+" in a path is not a space.
    with pytest.raises(TwilioRestException) as err:
        users("ALICE@example.com").fetch()
    assert err.value.code == 50200
    with pytest.raises(TwilioRestException) as err:
        users("user 1@x.com").fetch()
    assert err.value.code == 50200
    for identity in IDENTITIES:
        assert users(identity).delete() is True
    assert users.list() == []


def test_user_errors(chat, service):
    users = chat.services(service.sid).users
    users.create(identity="dup")
    with pytest.raises(TwilioRestException) as err:
        users.create(identity="dup")
    assert (err.value.status, err.value.code) == (409, 50201)
    with pytest.raises(TwilioRestException) as err:
        users.create(identity="US" + "a" * 32)
    assert (err.value.status, err.value.code) == (400, 50206)
    with pytest.raises(TwilioRestException) as err:
        users.create(identity="x" * 257)
    assert (err.value.status, err.value.code) == (400, 50207)
    for call in (
        lambda: users(MISSING_USER).fetch(),
        lambda: users("nobody-here").fetch(),
        lambda: users("nobody-here").update(friendly_name="x"),
        lambda: users(MISSING_USER).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (404, 50200)
    with pytest.raises(TwilioRestException) as err:
        chat.services(MISSING_SERVICE).users("dup").fetch()
    assert (err.value.status, err.value.code) == (404, 50050)
    with pytest.raises(TwilioException) as err:
        users("nobody-here").user_bindings.list()
    assert list_error(err.value) == (404, 50200)


def test_users_paging_in_creation_order(chat, api, service):
    users = chat.services(service.sid).users
    # Identities out of alphabetical order: the order must be creation order.
    identities = [unique(f"{c}-") for c in "qbzam"]
    sids = [users.create(identity=i).sid for i in identities]

    start = len(api.log)
    assert [u.sid for u in users.list(page_size=2)] == sids
    gets = [e for e in api.log[start:] if e.method == "GET"]
    assert len(gets) == 3
    assert [u.identity for u in users.stream(page_size=2)] == identities
    assert [u.sid for u in users.stream(page_size=4, limit=5)] == sids
    assert [u.sid for u in users.list(limit=3)] == sids[:3]
    # A record created while paging is not lost, and none repeats.
    pager = users.stream(page_size=2)
    seen = [next(pager).sid, next(pager).sid]
    late = users.create(identity=unique("late-")).sid
    seen += [u.sid for u in pager]
    assert seen == sids + [late]
