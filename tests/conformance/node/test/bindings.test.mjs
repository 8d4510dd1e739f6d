// Conformance: drive one real Bindery through Twilio's official Node helper library
// (twilio 6.2.0, pinned in package.json) exactly as a chat backend would, with only the Chat base
// URL changed (see lib/client.mjs). Every response body is validated against
// crates/http/openapi/twilio_chat_v2.json (see lib/spec.mjs); a test fails if any body it caused
// does not conform.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import twilio from "twilio";
import { Bindery } from "../lib/bindery.mjs";
import { makeClient } from "../lib/client.mjs";

const T = { timeout: 20000 };

let bindery;
let client;
let httpClient;
let validator;
let serviceSid;

before(async () => {
  bindery = new Bindery();
  await bindery.start();
  ({ client, httpClient, validator } = makeClient(bindery));
  const service = await client.chat.v2.services.create({ friendlyName: "node-conformance" });
  assert.match(service.sid, /^IS[0-9a-f]{32}$/);
  serviceSid = service.sid;
});

after(() => {
  bindery?.cleanup();
});

// Attribute spec violations to the test whose requests caused them.
afterEach(() => {
  const found = httpClient ? httpClient.violations.splice(0) : [];
  if (found.length) {
    throw new Error(`responses that do not match the spec:\n  ${found.join("\n  ")}`);
  }
});

// ---------------------------------------------------------------------------------------------
// helpers

const service = () => client.chat.v2.services(serviceSid);

let addressCounter = 0;
/**
 * [EXT] CONTRACT.md §4.1: register a device. Not a Twilio operation, so there is no generated
 * method; it goes through the library's own request path (`Version.createWithResponseInfo`), which
 * adds the auth, the base URL and the form encoding (repeated keys for arrays) like any other call,
 * and which interpolates the user path segment raw, as the generated code does for fetch/list.
 */
async function register(user, bindingType, { endpoint, address, messageTypes } = {}) {
  addressCounter += 1;
  const data = {
    BindingType: bindingType,
    Address: address ?? `token-${bindingType}-${addressCounter}-${Date.now()}`,
  };
  if (endpoint !== undefined) data.Endpoint = endpoint;
  if (messageTypes !== undefined) data.MessageTypes = messageTypes;
  const res = await client.chat.v2.createWithResponseInfo({
    uri: `/Services/${serviceSid}/Users/${user}/Bindings`,
    method: "post",
    data,
  });
  return { status: res.statusCode, body: res.body };
}

async function expectRestError(promise, { status, code }) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof twilio.RestException, `expected a RestException, got ${err?.constructor?.name}: ${err}`);
    assert.equal(err.status, status, `status of ${err.message}`);
    if (code !== undefined) assert.equal(err.code, code, `code of ${err.message}`);
    assert.match(String(err.moreInfo), /^https:\/\/www\.twilio\.com\/docs\/errors\/\d+$/);
    return true;
  });
}

const sids = (items) => items.map((b) => b.sid);

// ---------------------------------------------------------------------------------------------

test("registering a device answers 201, then 200 with the same sid for the same endpoint", T, async () => {
  const first = await register("register-user", "apn", { endpoint: "device-1", address: "apn-addr-1" });
  assert.equal(first.status, 201);
  assert.match(first.body.sid, /^BS[0-9a-f]{32}$/);
  assert.equal(first.body.binding_type, "apn");
  assert.equal(first.body.identity, "register-user");
  assert.equal(first.body.endpoint, "device-1");
  assert.deepEqual(
    [...first.body.message_types].sort(),
    ["added_to_channel", "invited_to_channel", "new_message", "removed_from_channel"],
  );
  assert.ok(!JSON.stringify(first.body).includes("apn-addr-1"), "the push address must never be returned");

  const again = await register("register-user", "apn", {
    endpoint: "device-1",
    address: "apn-addr-2",
    messageTypes: ["new_message", "added_to_channel"],
  });
  assert.equal(again.status, 200);
  assert.equal(again.body.sid, first.body.sid);
  assert.deepEqual([...again.body.message_types].sort(), ["added_to_channel", "new_message"]);

  // The library reads it back as a typed instance.
  const fetched = await service().users("register-user").userBindings(first.body.sid).fetch();
  assert.equal(fetched.sid, first.body.sid);
  assert.equal(fetched.bindingType, "apn");
  assert.deepEqual([...fetched.messageTypes].sort(), ["added_to_channel", "new_message"]);
  assert.ok(fetched.dateCreated instanceof Date && !Number.isNaN(fetched.dateCreated.getTime()),
    `dateCreated should deserialize to a Date, got ${fetched.dateCreated}`);
});

test("userBindings.list({bindingType: ['apn','fcm']}) returns exactly the apn and fcm bindings", T, async () => {
  const user = "filter-user";
  const apn1 = (await register(user, "apn", { endpoint: "f-apn-1" })).body;
  const fcm = (await register(user, "fcm", { endpoint: "f-fcm-1" })).body;
  const gcm = (await register(user, "gcm", { endpoint: "f-gcm-1" })).body;
  const apn2 = (await register(user, "apn", { endpoint: "f-apn-2" })).body;
  const bindings = service().users(user).userBindings;

  const filtered = await bindings.list({ bindingType: ["apn", "fcm"] });
  assert.deepEqual(sids(filtered), [apn1.sid, fcm.sid, apn2.sid]);
  for (const b of filtered) assert.ok(["apn", "fcm"].includes(b.bindingType), b.bindingType);

  // The filter is repeated in the query string (BindingType=apn&BindingType=fcm).
  const listCall = httpClient.exchanges.findLast((e) => e.method === "get" && e.url.endsWith(`/Users/${user}/Bindings`));
  assert.deepEqual(listCall.params.BindingType, ["apn", "fcm"]);

  assert.deepEqual(sids(await bindings.list({ bindingType: ["gcm"] })), [gcm.sid]);
  assert.deepEqual(sids(await bindings.list()), [apn1.sid, fcm.sid, gcm.sid, apn2.sid]);

  // The filter survives paging: next_page_url keeps it (CONTRACT.md §2.2).
  const mark = httpClient.exchanges.length;
  const paged = await bindings.list({ bindingType: ["apn", "fcm"], pageSize: 1 });
  assert.deepEqual(sids(paged), [apn1.sid, fcm.sid, apn2.sid]);
  // The first request carries the filter as params; the library fetches the next pages from
  // next_page_url verbatim (which may name the user by SID).
  const followed = httpClient.exchanges.slice(mark + 1);
  assert.equal(followed.length, 2, "expected the two next pages to be followed");
  for (const e of followed) {
    const types = new URL(e.url).searchParams.getAll("BindingType").sort();
    assert.deepEqual(types, ["apn", "fcm"], `next_page_url lost the filter: ${e.url}`);
  }
});

test("paging with pageSize 2 yields every binding exactly once, in creation order", T, async () => {
  const user = "paging-user";
  const types = ["apn", "fcm", "gcm", "apn", "fcm", "gcm", "apn"];
  const expected = [];
  for (const [i, type] of types.entries()) {
    const { status, body } = await register(user, type, { endpoint: `p-${i}` });
    assert.equal(status, 201);
    expected.push(body.sid);
  }
  const bindings = service().users(user).userBindings;

  // list() follows next_page_url until it is null.
  assert.deepEqual(sids(await bindings.list({ pageSize: 2 })), expected);

  // each()
  const seen = [];
  await bindings.each({ pageSize: 2 }, (b) => { seen.push(b.sid); });
  assert.deepEqual(seen, expected);

  // limit stops early.
  assert.deepEqual(sids(await bindings.list({ pageSize: 2, limit: 3 })), expected.slice(0, 3));

  // page() / nextPage() by hand.
  const pages = [];
  let page = await bindings.page({ pageSize: 2 });
  while (page) {
    assert.ok(page.instances.length <= 2, `page of ${page.instances.length} records with pageSize 2`);
    pages.push(page);
    page = await page.nextPage();
  }
  assert.deepEqual(pages.map((p) => p.instances.length), [2, 2, 2, 1]);
  assert.deepEqual(pages.flatMap((p) => sids(p.instances)), expected);

  // And back again with previousPage(): the same pages, in reverse.
  let back = pages[pages.length - 1];
  for (let i = pages.length - 2; i >= 0; i--) {
    back = await back.previousPage();
    assert.ok(back, `previousPage() of page ${i + 1} returned nothing`);
    assert.deepEqual(sids(back.instances), sids(pages[i].instances), `page ${i} walking back`);
  }
  assert.equal(await back.previousPage(), undefined, "the first page has no previous_page_url");
});

const IDENTITIES = [
  "alice@example.com",
  "user+1@x.com",
  "a b",
  "a+b",
  "Zoë",
  "Zoë Ünal+tag@example.com",
];

test("users and user bindings are fetched by identity (@, +, space, non-ASCII)", T, async () => {
  const created = new Map();
  for (const identity of IDENTITIES) {
    const user = await service().users.create({ identity });
    assert.equal(user.identity, identity);
    assert.match(user.sid, /^US[0-9a-f]{32}$/);
    created.set(identity, user.sid);
  }
  assert.equal(new Set(created.values()).size, IDENTITIES.length, "every identity is its own user");

  for (const identity of IDENTITIES) {
    const userSid = created.get(identity);
    const byIdentity = await service().users(identity).fetch();
    assert.equal(byIdentity.sid, userSid, `users(${JSON.stringify(identity)}).fetch()`);
    assert.equal(byIdentity.identity, identity);
    const bySid = await service().users(userSid).fetch();
    assert.equal(bySid.identity, identity);

    const reg = await register(identity, "fcm", { endpoint: `id-${userSid}` });
    assert.equal(reg.status, 201, `register under ${JSON.stringify(identity)} should reuse the user`);
    assert.equal(reg.body.user_sid, userSid);
    const bindingSid = reg.body.sid;

    const binding = await service().users(identity).userBindings(bindingSid).fetch();
    assert.equal(binding.sid, bindingSid);
    assert.equal(binding.identity, identity);
    assert.equal(binding.userSid, userSid);
    assert.equal(binding.serviceSid, serviceSid);
    assert.equal(binding.accountSid, bindery.accountSid);
    assert.equal(binding.bindingType, "fcm");
    // `url` uses the user SID even when addressed by identity, on Bindery's own origin.
    assert.equal(binding.url, `${bindery.baseUrl}/v2/Services/${serviceSid}/Users/${userSid}/Bindings/${bindingSid}`);

    const viaSid = await service().users(userSid).userBindings(bindingSid).fetch();
    assert.equal(viaSid.sid, bindingSid);
    assert.deepEqual(sids(await service().users(identity).userBindings.list()), [bindingSid]);

    const notifiable = await service().users(identity).fetch();
    assert.equal(notifiable.isNotifiable, true, "a user with a binding is notifiable");
  }

  // A binding fetched under another user is not found (CONTRACT.md §3).
  const [first, second] = IDENTITIES;
  const [firstBinding] = await service().users(first).userBindings.list();
  await expectRestError(service().users(second).userBindings(firstBinding.sid).fetch(), { status: 404, code: 20404 });
});

test("remove() deletes a binding: resolves true, then 404 / 20404 everywhere", T, async () => {
  const user = "delete-user";
  const doomed = (await register(user, "apn", { endpoint: "d-apn" })).body;
  const kept = (await register(user, "fcm", { endpoint: "d-fcm" })).body;
  const bindings = service().users(user).userBindings;

  // The same binding is visible at the service level too.
  const serviceLevel = await service().bindings(doomed.sid).fetch();
  assert.equal(serviceLevel.sid, doomed.sid);

  assert.equal(await bindings(doomed.sid).remove(), true);
  const del = httpClient.exchanges.findLast((e) => e.method === "delete");
  assert.equal(del.statusCode, 204);

  await expectRestError(bindings(doomed.sid).fetch(), { status: 404, code: 20404 });
  await expectRestError(service().bindings(doomed.sid).fetch(), { status: 404, code: 20404 });
  await expectRestError(bindings(doomed.sid).remove(), { status: 404, code: 20404 });
  assert.deepEqual(sids(await bindings.list()), [kept.sid]);
  assert.equal((await bindings(kept.sid).fetch()).sid, kept.sid);
});

test("every response body was checked against the spec", T, () => {
  // The afterEach hook fails each test whose responses did not conform; this only guards against
  // the validation silently checking nothing.
  assert.ok(validator.validatedCount >= 50, `only ${validator.validatedCount} bodies were validated`);
});

// Last: a clean shutdown, and the projections must equal a replay of the event log.
test("SIGTERM stops Bindery with exit 0 and `bindery verify` passes", T, async () => {
  const exit = await bindery.stop();
  assert.ok(!exit.timedOut, `bindery did not stop within 10 s of SIGTERM\n${bindery.output()}`);
  assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null },
    `bindery serve exit\n${bindery.output()}`);
  const verify = bindery.verify();
  assert.equal(verify.status, 0,
    `bindery verify --data-dir ${bindery.dataDir} exited ${verify.status}\n${verify.stdout}\n${verify.stderr}`);
});
