// A twilio-node client pointed at Bindery, with every response checked against the spec.
import twilio from "twilio";
import { SpecValidator } from "./spec.mjs";

/**
 * twilio-node's documented knob for its HTTP layer is the `httpClient` client option (README,
 * "Use a custom HTTP Client"): any object with `request(opts)` resolving to
 * `{statusCode, body, headers}`. This one delegates to the library's own default
 * `twilio.RequestClient` (axios underneath, unchanged) and only *observes* each exchange: the
 * URL is not touched, so the base URL override below is the only redirection.
 */
export class ValidatingRequestClient {
  constructor(validator, opts = {}) {
    this.inner = new twilio.RequestClient(opts);
    this.validator = validator;
    this.violations = [];
    this.exchanges = [];
  }

  async request(opts) {
    const response = await this.inner.request(opts);
    const exchange = {
      method: opts.method,
      url: opts.uri,
      params: opts.params,
      data: opts.data,
      statusCode: response.statusCode,
      headers: response.headers,
      body: response.body,
    };
    this.exchanges.push(exchange);
    for (const problem of this.validator.check(exchange)) this.violations.push(problem);
    return response;
  }

  get lastResponse() {
    return this.inner.lastResponse;
  }

  get lastRequest() {
    return this.inner.lastRequest;
  }
}

/**
 * Build the client exactly as an application would, then change only the Chat domain's base URL.
 *
 * How the base URL is set, and why this knob: in twilio-node 6.2.0 every domain object
 * (`client.chat`, a `Domain`) builds each request URL as `domain.baseUrl + "/" + version + path`
 * (lib/base/Domain.js `absoluteUrl`); `baseUrl` is a public, typed field (`Domain.baseUrl: string`
 * in lib/base/Domain.d.ts) initialised to "https://chat.twilio.com" by lib/rest/ChatBase.js.
 * Assigning `client.chat.baseUrl` therefore redirects every Chat call (v1/v2/v3 alike) and nothing
 * else. The library's other documented routing knobs cannot reach a local server: `region`/`edge`
 * (and TWILIO_REGION/TWILIO_EDGE) only rewrite the host to `chat.<edge>.<region>.twilio.com`, and a
 * custom `httpClient` would have to rewrite URLs itself. Paging needs nothing more: the library
 * follows `meta.next_page_url`/`previous_page_url` verbatim, and Bindery makes those absolute on
 * its own origin.
 *
 * `edge: ""` and `region: ""` pin both to "none", so a TWILIO_EDGE/TWILIO_REGION in the caller's
 * environment cannot make BaseTwilio.getHostname() rewrite the 127.0.0.1 host.
 */
export function makeClient(bindery) {
  const validator = new SpecValidator();
  const httpClient = new ValidatingRequestClient(validator, { timeout: 15000 });
  const client = twilio(bindery.accountSid, bindery.authToken, {
    httpClient,
    edge: "",
    region: "",
  });
  client.chat.baseUrl = bindery.baseUrl;
  return { client, httpClient, validator };
}
