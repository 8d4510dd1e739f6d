// Response validation against Twilio's OpenAPI document for Chat v2
// (crates/http/openapi/twilio_chat_v2.json, OpenAPI 3.0.1).
//
// OpenAPI 3.0 is not JSON Schema: `nullable: true` has no meaning to a JSON Schema validator and
// `$ref`s point into `#/components/schemas`. So every response schema is converted once:
//   - `$ref` is inlined (the chat v2 schemas are not recursive);
//   - `nullable: true` becomes `type: [T, "null"]` (and `null` joins an `enum`);
//   - vendor keys (`x-twilio`) and `description` are dropped;
//   - every object that declares `properties` gets `required: [all of them]`, because the wire
//     contract (shared/CONTRACT.md §2 "Responses") says every field from the spec is present,
//     null where unknown;
//   - `format: date-time` is checked as exactly `YYYY-MM-DDTHH:MM:SSZ` (CONTRACT.md §2 "Dates":
//     any other form reaches the user as a raw string), `uri` by ajv-formats, and Twilio's own
//     `uri-map` (an object of links) is accepted as is.
// Error bodies (4xx/5xx) are checked against the error shape of CONTRACT.md §2.1, and 204 bodies
// must be empty (CONTRACT.md §2 "Status").
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const here = path.dirname(fileURLToPath(import.meta.url));
export const SPEC_PATH = path.resolve(here, "../../../../crates/http/openapi/twilio_chat_v2.json");

const STRICT_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

const ERROR_SCHEMA = {
  type: "object",
  required: ["code", "message", "more_info", "status"],
  properties: {
    code: { type: "integer" },
    message: { type: "string" },
    more_info: { type: "string" },
    status: { type: "integer" },
  },
  // CONTRACT.md §2.1: never `type` and `title` together with `code` and `status` (the helper
  // libraries would read that as RFC 9457 and raise a different exception class).
  not: { required: ["type", "title"] },
};

function convert(node, components, seen = []) {
  if (Array.isArray(node)) return node.map((n) => convert(n, components, seen));
  if (node === null || typeof node !== "object") return node;
  if (typeof node.$ref === "string") {
    const prefix = "#/components/schemas/";
    if (!node.$ref.startsWith(prefix)) throw new Error(`unsupported $ref ${node.$ref}`);
    const name = node.$ref.slice(prefix.length);
    if (seen.includes(name)) throw new Error(`recursive $ref ${name}`);
    if (!(name in components)) throw new Error(`dangling $ref ${name}`);
    // OpenAPI 3.0 ignores the siblings of a $ref.
    return convert(components[name], components, [...seen, name]);
  }
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    if (key.startsWith("x-") || key === "description" || key === "nullable") continue;
    if (key === "properties") {
      out.properties = {};
      for (const [prop, sub] of Object.entries(value)) {
        out.properties[prop] = convert(sub, components, seen);
      }
    } else {
      out[key] = convert(value, components, seen);
    }
  }
  if (node.nullable === true) {
    if (typeof out.type === "string") out.type = [out.type, "null"];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
  }
  if (out.properties && !out.required) out.required = Object.keys(out.properties);
  return out;
}

function pathRegex(template) {
  const body = template
    .split("/")
    .map((seg) => (/^\{[^}]+\}$/.test(seg) ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${body}$`);
}

export class SpecValidator {
  constructor(specPath = SPEC_PATH) {
    this.spec = JSON.parse(readFileSync(specPath, "utf8"));
    this.components = this.spec.components.schemas;
    this.ajv = new Ajv({ allErrors: true, strict: false });
    addFormats(this.ajv, ["uri"]);
    this.ajv.addFormat("date-time", STRICT_DATE_TIME);
    this.ajv.addFormat("uri-map", true);
    this.errorValidator = this.ajv.compile(ERROR_SCHEMA);
    this.operations = [];
    for (const [template, item] of Object.entries(this.spec.paths)) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        const op = item[method];
        if (!op) continue;
        const responses = {};
        for (const [status, resp] of Object.entries(op.responses || {})) {
          const schema = resp.content?.["application/json"]?.schema;
          responses[status] = schema ? { schema } : { empty: true };
        }
        this.operations.push({ method, template, regex: pathRegex(template), responses });
      }
    }
    // [EXT] CONTRACT.md §4.1: registering a device (POST on the user's Bindings list, not a Twilio
    // operation) answers the User Binding body, 201 when created and 200 when updated in place.
    const ub = { schema: { $ref: "#/components/schemas/chat.v2.service.user.user_binding" } };
    this.operations.push({
      method: "post",
      template: "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings [EXT register]",
      regex: pathRegex("/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings"),
      responses: { 201: ub, 200: ub },
    });
    this.compiled = new Map();
    this.validatedCount = 0;
  }

  findOperation(method, pathname) {
    method = method.toLowerCase();
    const matches = this.operations.filter((o) => o.method === method && o.regex.test(pathname));
    // A literal segment beats a parameter (e.g. `/Bindings` vs `/{Sid}`): prefer fewer params.
    matches.sort((a, b) => (a.template.match(/\{/g) || []).length - (b.template.match(/\{/g) || []).length);
    return matches[0];
  }

  validatorFor(op, status) {
    const key = `${op.method} ${op.template} ${status}`;
    if (!this.compiled.has(key)) {
      const schema = convert(op.responses[status].schema, this.components);
      this.compiled.set(key, this.ajv.compile(schema));
    }
    return this.compiled.get(key);
  }

  /**
   * Check one HTTP exchange. Returns a list of human-readable problems (empty when it conforms).
   * `body` is what the request client got: axios has already parsed a JSON body into an object.
   */
  check({ method, url, statusCode, headers, body }) {
    const problems = [];
    const where = `${method.toUpperCase()} ${url} -> ${statusCode}`;
    const pathname = new URL(url).pathname;
    const contentType = String(headers?.["content-type"] ?? "");
    let data = body;
    const isEmpty = body === undefined || body === null || body === "";

    if (statusCode === 204) {
      if (!isEmpty) problems.push(`${where}: a 204 must have an empty body, got ${JSON.stringify(body)}`);
      this.validatedCount++;
      return problems;
    }
    if (typeof data === "string") {
      try {
        data = JSON.parse(data);
      } catch {
        problems.push(`${where}: body is not JSON: ${JSON.stringify(body).slice(0, 300)}`);
        return problems;
      }
    }
    if (!contentType.toLowerCase().startsWith("application/json")) {
      problems.push(`${where}: Content-Type is ${JSON.stringify(contentType)}, expected application/json`);
    }

    if (statusCode >= 400) {
      if (!this.errorValidator(data)) {
        problems.push(`${where}: error body does not match CONTRACT.md §2.1: ${this.ajv.errorsText(this.errorValidator.errors)} in ${JSON.stringify(data)}`);
      } else if (data.status !== statusCode) {
        problems.push(`${where}: error body says status ${data.status}`);
      }
      this.validatedCount++;
      return problems;
    }

    const op = this.findOperation(method, pathname);
    if (!op) {
      problems.push(`${where}: no operation in the spec matches ${method.toUpperCase()} ${pathname}`);
      return problems;
    }
    const resp = op.responses[String(statusCode)];
    if (!resp) {
      problems.push(`${where}: the spec's ${op.template} ${method.toUpperCase()} declares only statuses ${Object.keys(op.responses).join(", ")}`);
      return problems;
    }
    if (resp.empty) {
      if (!isEmpty) problems.push(`${where}: the spec declares no body, got ${JSON.stringify(body).slice(0, 300)}`);
      this.validatedCount++;
      return problems;
    }
    const validate = this.validatorFor(op, String(statusCode));
    if (!validate(data)) {
      const errs = validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.missingProperty ? ` (${e.params.missingProperty})` : ""}`);
      problems.push(`${where}: body does not match ${op.template} ${statusCode}: ${errs.join("; ")}`);
    }
    this.validatedCount++;
    return problems;
  }
}
