// Reads the OpenAPI document as a client would: finds the operation of a request and validates
// bodies against its schemas with a JSON Schema 2020-12 validator (OpenAPI 3.1's dialect).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { ErrorObject } from "ajv";
import { root } from "./server.js";

export type Doc = { paths: Record<string, Record<string, any>>; components: { schemas: Record<string, unknown> } } & Record<string, any>;

/** The route list of API.md (the fenced block under "## Routes"): method, path, query names, auth, status. */
export interface ContractRoute {
  method: string;
  path: string;
  query: string[];
  auth: "none" | "client" | "admin";
  status: number;
}

export function contractRoutes(): ContractRoute[] {
  const text = readFileSync(join(root, "..", "shared", "API.md"), "utf8");
  const block = /## Routes\s*```\n([\s\S]*?)```/.exec(text)?.[1];
  if (!block) throw new Error("API.md has no fenced route list under ## Routes");
  return block
    .split("\n")
    .filter((l) => l.trim().length > 0)
    .map((line) => {
      const m = /^(GET|PUT|POST|DELETE)\s+(\S+)\s+(?:(admin|client)\s+)?->\s*(\d{3})/.exec(line);
      if (!m) throw new Error(`API.md route line not understood: ${line}`);
      const [path, query = ""] = m[2]!.split("?");
      return {
        method: m[1]!.toLowerCase(),
        path: path!,
        query: query.split("&").filter(Boolean).map((q) => q.replace(/=.*$/, "")),
        auth: (m[3] ?? "none") as ContractRoute["auth"],
        status: Number(m[4]),
      };
    });
}

const pointer = (...parts: string[]) => parts.map((p) => encodeURIComponent(p.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");

export class OpenApi {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });

  constructor(readonly doc: Doc) {
    // The whole document is one resource, so #/components/schemas/... resolves inside it.
    this.ajv.addSchema(doc, "openapi");
  }

  /** The document's path template and operation for a request's method and URL path. */
  operation(method: string, path: string): { template: string; op: any } | null {
    for (const [template, ops] of Object.entries(this.doc.paths)) {
      const re = new RegExp("^" + template.replace(/[.]/g, "\\.").replace(/\{\w+\}/g, "[^/]+") + "$");
      const op = ops[method.toLowerCase()];
      if (op && re.test(path)) return { template, op };
    }
    return null;
  }

  private check(ref: string, value: unknown): string[] {
    const validate = this.ajv.getSchema(ref) ?? this.ajv.compile({ $ref: ref });
    if (validate(value)) return [];
    return (validate.errors as ErrorObject[]).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }

  /** Problems of a JSON request body against the operation's schema ([] when valid). */
  requestProblems(method: string, path: string, body: unknown): string[] {
    const found = this.operation(method, path);
    if (!found) return [`no operation ${method} ${path}`];
    if (!found.op.requestBody?.content?.["application/json"]) return body === undefined ? [] : [`${method} ${found.template} takes no JSON body`];
    return this.check(`openapi#/${pointer("paths", found.template, method.toLowerCase(), "requestBody", "content", "application/json", "schema")}`, body);
  }

  /** The media types the document gives an answer of this status. */
  mediaTypes(method: string, path: string, status: number): string[] {
    return Object.keys(this.operation(method, path)?.op.responses[String(status)]?.content ?? {});
  }

  /** Problems of one part of a streamed answer (a watch event's data, a snapshot line) against its x-parts schema. */
  partProblems(method: string, path: string, status: number, part: string, value: unknown): string[] {
    const found = this.operation(method, path);
    if (!found) return [`no operation ${method} ${path}`];
    const [type] = this.mediaTypes(method, path, status);
    if (!type || !found.op.responses[String(status)].content[type]["x-parts"]?.[part]) return [`${method} ${found.template} ${status} has no part ${part}`];
    return this.check(`openapi#/${pointer("paths", found.template, method.toLowerCase(), "responses", String(status), "content", type, "x-parts", part)}`, value);
  }

  /**
   * Problems of an answer as it came over the wire: its media type is one the document gives its
   * status; a JSON body validates; an event stream's data and an NDJSON file's lines validate
   * against the stream's parts (a snapshot: a header, then rows).
   */
  answerProblems(method: string, path: string, status: number, contentType: string, text: string): string[] {
    const type = contentType.split(";")[0]!.trim();
    if (text === "" || type === "application/json") return this.responseProblems(method, path, status, text === "" ? undefined : JSON.parse(text));
    const documented = this.mediaTypes(method, path, status).map((t) => t.split(";")[0]!.trim());
    if (!documented.includes(type)) return [`${contentType} is not documented for ${status} (${documented.join(", ")})`];
    if (type === "text/event-stream") {
      const data = text.split("\n").filter((l) => l.startsWith("data:")).map((l) => JSON.parse(l.slice("data:".length)));
      return data.flatMap((d) => this.partProblems(method, path, status, "data", d));
    }
    if (type === "application/x-ndjson") {
      const [header, ...rows] = text.trim().split("\n").map((l) => JSON.parse(l));
      return [...this.partProblems(method, path, status, "header", header), ...rows.flatMap((r) => this.partProblems(method, path, status, "row", r))];
    }
    return [];
  }

  /** Problems of an answer's status and JSON body against the operation's responses ([] when valid). */
  responseProblems(method: string, path: string, status: number, body: unknown): string[] {
    const found = this.operation(method, path);
    if (!found) return [`no operation ${method} ${path}`];
    const answer = found.op.responses[String(status)];
    if (!answer) return [`${method} ${found.template} documents no ${status} answer`];
    if (!answer.content) return body === undefined ? [] : [`${method} ${found.template} ${status} has no body`];
    return this.check(`openapi#/${pointer("paths", found.template, method.toLowerCase(), "responses", String(status), "content", "application/json", "schema")}`, body);
  }
}
