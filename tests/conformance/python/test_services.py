"""Services through twilio-python's resource API: create, fetch, update, list, delete, paging."""

from datetime import datetime, timezone

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from bindery_support import MISSING_SERVICE, list_error, unique
from bindery_support import Api


def test_create_fetch_update_delete(chat, api, bindery):
    name = unique("svc ")
    svc = chat.services.create(friendly_name=name)
    assert api.last.status == 201
    assert svc.sid.startswith("IS") and len(svc.sid) == 34
    assert svc.account_sid == bindery.account_sid
    assert svc.friendly_name == name
    # Dates reach the user as datetimes only when they are exactly YYYY-MM-DDTHH:MM:SSZ.
    assert isinstance(svc.date_created, datetime) and svc.date_created.tzinfo == timezone.utc
    assert isinstance(svc.date_updated, datetime)
    assert svc.url == f"{bindery.base_url}/v2/Services/{svc.sid}"
    assert svc.links["users"] == f"{bindery.base_url}/v2/Services/{svc.sid}/Users"
    assert svc.links["bindings"] == f"{bindery.base_url}/v2/Services/{svc.sid}/Bindings"
    assert svc.notifications["new_message"]["enabled"] is False
    assert isinstance(svc.typing_indicator_timeout, int)

    fetched = chat.services(svc.sid).fetch()
    assert api.last.status == 200
    assert (fetched.sid, fetched.friendly_name, fetched.date_created) == (svc.sid, name, svc.date_created)

    new_name = unique("renamed ")
    updated = chat.services(svc.sid).update(
        friendly_name=new_name,
        notifications_new_message_enabled=True,
        notifications_new_message_template="${USER}: ${MESSAGE}",
        notifications_new_message_badge_count_enabled=True,
        notifications_added_to_channel_enabled=True,
        notifications_added_to_channel_sound="ding",
    )
    assert api.last.status == 200
    assert updated.sid == svc.sid
    assert updated.friendly_name == new_name
    nm = updated.notifications["new_message"]
    assert nm["enabled"] is True
    assert nm["template"] == "${USER}: ${MESSAGE}"
    assert nm["badge_count_enabled"] is True
    assert updated.notifications["added_to_channel"] == {"enabled": True, "template": None, "sound": "ding"}
    assert updated.notifications["removed_from_channel"]["enabled"] is False
    assert updated.date_updated >= svc.date_updated

    again = chat.services(svc.sid).fetch()
    assert again.friendly_name == new_name
    assert again.notifications["new_message"]["enabled"] is True
    assert again.notifications["added_to_channel"]["sound"] == "ding"

    # An update that leaves a field out keeps it.
    chat.services(svc.sid).update(notifications_invited_to_channel_enabled=True)
    kept = chat.services(svc.sid).fetch()
    assert kept.friendly_name == new_name
    assert kept.notifications["new_message"]["enabled"] is True
    assert kept.notifications["invited_to_channel"]["enabled"] is True

    listed = {s.sid: s for s in chat.services.list()}
    assert svc.sid in listed and listed[svc.sid].friendly_name == new_name

    assert chat.services(svc.sid).delete() is True
    assert api.last.status == 204 and api.last.text == ""
    with pytest.raises(TwilioRestException) as err:
        chat.services(svc.sid).fetch()
    assert (err.value.status, err.value.code) == (404, 50050)
    assert svc.sid not in {s.sid for s in chat.services.list()}


def test_missing_service(chat):
    for call in (
        lambda: chat.services(MISSING_SERVICE).fetch(),
        lambda: chat.services(MISSING_SERVICE).update(friendly_name="x"),
        lambda: chat.services(MISSING_SERVICE).delete(),
        lambda: chat.services(MISSING_SERVICE).users.create(identity="x"),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (404, 50050)
    # twilio-python 9.13 reads a failed list page as a plain TwilioException carrying the response.
    for call in (
        lambda: chat.services(MISSING_SERVICE).users.list(),
        lambda: chat.services(MISSING_SERVICE).bindings.list(),
    ):
        with pytest.raises(TwilioException) as err:
            call()
        assert list_error(err.value) == (404, 50050)


def test_service_delete_cascades_to_users_and_bindings(chat, api):
    svc = chat.services.create(friendly_name=unique("cascade "))
    user = chat.services(svc.sid).users.create(identity="cascade-user")
    r = api.register(svc.sid, user.identity, "fcm", unique("tok-"))
    assert r.status_code == 201
    binding_sid = api.last.json()["sid"]
    assert chat.services(svc.sid).delete() is True
    with pytest.raises(TwilioRestException) as err:
        chat.services(svc.sid).users(user.sid).fetch()
    assert (err.value.status, err.value.code) == (404, 50050)
    with pytest.raises(TwilioRestException) as err:
        chat.services(svc.sid).bindings(binding_sid).fetch()
    assert (err.value.status, err.value.code) == (404, 50050)


def test_services_paging_in_creation_order(bindery):
    # A fresh account, so the list holds exactly what this test creates.
    acct = bindery.create_account()
    api = Api(bindery, acct["account_sid"], acct["auth_token"])
    chat = api.chat
    assert chat.services.list() == []
    sids = [chat.services.create(friendly_name=f"page {i}").sid for i in range(5)]

    start = len(api.log)
    assert [s.sid for s in chat.services.list(page_size=2)] == sids
    pages = [e for e in api.log[start:] if e.method == "GET"]
    assert len(pages) == 3, [e.url for e in pages]  # 2 + 2 + 1, following next_page_url
    assert all(e.json()["meta"]["page_size"] == 2 for e in pages)
    assert [e.json()["meta"]["page"] for e in pages] == [0, 1, 2]
    assert pages[-1].json()["meta"]["next_page_url"] is None
    assert pages[0].json()["meta"]["previous_page_url"] is None
    assert pages[1].json()["meta"]["previous_page_url"] is not None

    assert [s.sid for s in chat.services.stream(page_size=3)] == sids
    assert [s.sid for s in chat.services.list(limit=3)] == sids[:3]
    assert [s.sid for s in chat.services.page(page_size=2)] == sids[:2]
