// The API reference page: renders /openapi.json (OpenAPI 3.1, JSON Schema 2020-12) as routes
// grouped by resource, each with its auth, parameters, request body and answers, then the named
// schemas. render() is pure (a document in, HTML out) so tests can run it without a browser.

const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
/** Escaped text where `code` spans become <code>. */
const prose = (v) => esc(v).replace(/`([^`]+)`/g, "<code>$1</code>");
const json = (v) => esc(JSON.stringify(v));
const refName = (ref) => ref.split("/").pop();
const anchor = (text) => String(text).replace(/[^A-Za-z0-9_-]/g, "-");

const authLabel = { none: "no token", client: "client token", admin: "admin token" };
/** zod writes integers' safe range as bounds: noise to a reader. */
const safeBound = 9007199254740991;

const range = (min, max) => (max === undefined ? `≥ ${min}` : min === undefined || min === 0 ? `≤ ${max}` : `${min}–${max}`);

function rules(s) {
  const r = [];
  if ("const" in s) r.push(`= ${json(s.const)}`);
  if (s.enum) r.push(`one of ${s.enum.map(json).join(", ")}`);
  if (s.minLength !== undefined || s.maxLength !== undefined) r.push(`length ${range(s.minLength, s.maxLength)}`);
  if (s.minimum !== undefined && Math.abs(s.minimum) !== safeBound) r.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined && Math.abs(s.maximum) !== safeBound) r.push(`≤ ${s.maximum}`);
  if (s.exclusiveMinimum !== undefined) r.push(`> ${s.exclusiveMinimum}`);
  if (s.exclusiveMaximum !== undefined) r.push(`< ${s.exclusiveMaximum}`);
  if (s.minItems !== undefined || s.maxItems !== undefined) r.push(`items ${range(s.minItems, s.maxItems)}`);
  if (s.pattern) r.push(`matches <code>${esc(s.pattern)}</code>`);
  if ("default" in s) r.push(`default ${json(s.default)}`);
  if (s.additionalProperties === false) r.push("no other fields");
  return r.length ? ` <span class="rule">${r.join("; ")}</span>` : "";
}

function typeOf(s) {
  if (Array.isArray(s.type)) return s.type.join(" | ");
  if (s.type) return s.type;
  if ("const" in s) return typeof s.const;
  return "any";
}

/** A schema that reads on one line: a reference, or a scalar with its rules. */
function isSimple(s) {
  return s.$ref !== undefined || (!s.anyOf && !s.oneOf && !s.allOf && s.type !== "object" && s.type !== "array");
}

/** An error answer: Error narrowed to its status's codes (see shared/api/openapi.ts). */
function errorCodes(s) {
  const [base, narrow] = s.allOf ?? [];
  const codes = narrow?.properties?.error?.properties?.code?.enum;
  return s.allOf?.length === 2 && base?.$ref && codes ? { ref: base.$ref, codes } : null;
}

export function schemaView(s) {
  if (s === true || s === undefined || s === null || (typeof s === "object" && Object.keys(s).length === 0)) return '<span class="type">any</span>';
  if (s === false) return '<span class="type">nothing</span>';
  const desc = s.description ? ` <span class="desc">${prose(s.description)}</span>` : "";
  const title = s.title ? `<span class="rule">${esc(s.title)}</span> ` : "";
  if (s.$ref) return `${title}<a href="#schema-${anchor(refName(s.$ref))}">${esc(refName(s.$ref))}</a>${desc}`;
  const narrowed = errorCodes(s);
  if (narrowed) return `<a href="#schema-${anchor(refName(narrowed.ref))}">${esc(refName(narrowed.ref))}</a> <span class="rule">code ${narrowed.codes.map(json).join(" | ")}</span>`;
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives) {
    if (alternatives.every(isSimple)) return title + alternatives.map(schemaView).join(" | ") + desc;
    return `${title}one of:${desc}<ul>${alternatives.map((a) => `<li>${schemaView(a)}</li>`).join("")}</ul>`;
  }
  if (s.allOf) return `${title}all of:${desc}<ul>${s.allOf.map((a) => `<li>${schemaView(a)}</li>`).join("")}</ul>`;
  // A schema that only describes (any JSON value) reads as its description.
  const type = typeOf(s) === "any" && s.description ? `<span class="type">${prose(s.description)}</span>` : `<span class="type">${esc(typeOf(s))}</span>${desc}`;
  let out = `${title}${type}${rules(s)}`;
  if (s.type === "object" || s.properties) {
    const required = new Set(s.required ?? []);
    const props = Object.entries(s.properties ?? {}).map(
      ([name, p]) => `<li><span class="name">${esc(name)}</span>${required.has(name) ? ' <span class="req">required</span>' : ""}: ${schemaView(p)}</li>`,
    );
    if (s.additionalProperties && typeof s.additionalProperties === "object" && Object.keys(s.additionalProperties).length > 0) {
      props.push(`<li><span class="name">*</span>: ${schemaView(s.additionalProperties)}</li>`);
    }
    if (props.length) out += `<ul>${props.join("")}</ul>`;
  }
  if (s.prefixItems) out += ` of [${s.prefixItems.map(schemaView).join(", ")}]`;
  else if (s.items) out += isSimple(s.items) ? ` of ${schemaView(s.items)}` : ` of:<ul><li>${schemaView(s.items)}</li></ul>`;
  return out;
}

/** The named schemas a body refers to at its top (X, or X | Y), to show in place. */
function topRefs(s) {
  if (s?.$ref) return [s.$ref];
  const alternatives = s?.anyOf ?? s?.oneOf ?? [];
  return alternatives.every((a) => a.$ref) ? alternatives.map((a) => a.$ref) : [];
}

function contentView(content, components, expand) {
  return Object.entries(content ?? {})
    .map(([type, media]) => {
      const parts = Object.entries(media["x-parts"] ?? {}).map(([name, p]) => `<li><span class="name">${esc(name)}</span>: ${schemaView(p)}</li>`);
      const inPlace = expand
        ? topRefs(media.schema)
            .filter((ref) => components?.[refName(ref)])
            .map((ref) => `<details open><summary>${esc(refName(ref))}</summary>${schemaView(components[refName(ref)])}</details>`)
            .join("")
        : "";
      return `<div class="schema"><code>${esc(type)}</code>: ${schemaView(media.schema)}${parts.length ? `<ul>${parts.join("")}</ul>` : ""}${inPlace}</div>`;
    })
    .join("");
}

function parametersView(params) {
  if (!params?.length) return "";
  const rows = params.map(
    (p) => `<tr><td><span class="name">${esc(p.name)}</span></td><td>${esc(p.in)}</td><td>${p.required ? "required" : ""}</td><td class="schema">${schemaView(p.schema)}</td></tr>`,
  );
  return `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th></th><th>schema</th></tr>${rows.join("")}</table>`;
}

function responsesView(responses, components) {
  const rows = Object.entries(responses ?? {}).map(([status, r]) => {
    const headers = Object.keys(r.headers ?? {}).map((h) => ` <span class="rule">(sets ${esc(h)})</span>`).join("");
    return `<tr><td class="status ${Number(status) < 400 ? "ok" : "err"}">${esc(status)}</td><td>${prose(r.description ?? "")}${headers}</td><td>${r.content ? contentView(r.content, components, Number(status) < 400) : '<span class="muted">no body</span>'}</td></tr>`;
  });
  return `<h4>Responses</h4><table><tr><th>status</th><th>meaning</th><th>body</th></tr>${rows.join("")}</table>`;
}

function operationView(method, path, op, components) {
  const auth = op["x-auth"] ?? (op.security?.length ? "client" : "none");
  const body = op.requestBody
    ? `<h4>Request body${op.requestBody.required ? "" : " (optional)"}</h4>${op.requestBody.description ? `<p class="muted">${prose(op.requestBody.description)}</p>` : ""}${contentView(op.requestBody.content, components, true)}`
    : "";
  return `<section class="op" id="op-${anchor(op.operationId ?? method + path)}" data-text="${esc(`${method} ${path} ${op.summary ?? ""} ${(op.tags ?? []).join(" ")}`.toLowerCase())}">
<header><span class="method ${esc(method)}">${esc(method.toUpperCase())}</span><span class="path">${esc(path)}</span><span class="auth ${esc(auth)}">${esc(authLabel[auth] ?? auth)}</span>${op["x-test-only"] ? '<span class="flag">tests only</span>' : ""}<span>${prose(op.summary ?? "")}</span></header>
<div class="body">${op.description ? `<p>${prose(op.description)}</p>` : ""}${parametersView(op.parameters)}${body}${responsesView(op.responses, components)}</div></section>`;
}

const methods = ["get", "put", "post", "delete", "patch"];

/** The document as the page's two parts: the table of contents and the reference itself. */
export function render(doc) {
  const byTag = new Map((doc.tags ?? []).map((t) => [t.name, []]));
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const method of methods) {
      const op = ops[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ method, path, op });
    }
  }
  let toc = "";
  let main = `<h1>${esc(doc.info?.title ?? "API")} <span class="muted">${esc(doc.info?.version ?? "")}</span></h1>`;
  main += `<p>${prose(doc.info?.description ?? "")}</p><p class="muted">The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${esc(doc.openapi)}).</p>`;
  const schemes = Object.entries(doc.components?.securitySchemes ?? {});
  if (schemes.length) main += `<h4>Tokens</h4><ul>${schemes.map(([name, s]) => `<li><code>${esc(name)}</code>: ${prose(s.description ?? s.scheme ?? "")}</li>`).join("")}</ul>`;
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    toc += `<h3>${esc(tag)}</h3>` + ops.map(({ method, path, op }) => `<a href="#op-${anchor(op.operationId ?? method + path)}" data-text="${esc(`${method} ${path} ${op.summary ?? ""} ${tag}`.toLowerCase())}"><span class="method ${esc(method)}">${esc(method.toUpperCase())}</span><span class="path">${esc(path)}</span></a>`).join("");
    main += `<h2 id="tag-${anchor(tag)}">${esc(tag)}</h2>` + ops.map(({ method, path, op }) => operationView(method, path, op, doc.components?.schemas)).join("");
  }
  const schemas = Object.entries(doc.components?.schemas ?? {});
  if (schemas.length) {
    toc += `<h3>schemas</h3>` + schemas.map(([name]) => `<a href="#schema-${anchor(name)}" data-text="${esc(name.toLowerCase())}"><span class="path">${esc(name)}</span></a>`).join("");
    main += `<h2 id="schemas">Schemas</h2>` + schemas.map(([name, s]) => `<section class="op" id="schema-${anchor(name)}" data-text="${esc(name.toLowerCase())}"><header><span class="path">${esc(name)}</span></header><div class="body schema">${schemaView(s)}<details><summary>JSON Schema</summary><pre>${esc(JSON.stringify(s, null, 2))}</pre></details></div></section>`).join("");
  }
  return { toc, main };
}

function filter(text) {
  const q = text.trim().toLowerCase();
  for (const el of document.querySelectorAll("[data-text]")) el.classList.toggle("hidden", q !== "" && !el.dataset.text.includes(q));
}

async function start() {
  const main = document.getElementById("main");
  try {
    const res = await fetch("/openapi.json");
    if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
    const page = render(await res.json());
    document.getElementById("toc").innerHTML = page.toc;
    main.innerHTML = page.main;
    document.getElementById("filter").addEventListener("input", (e) => filter(e.target.value));
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  } catch (err) {
    main.innerHTML = `<p class="err">Could not load the API document: ${esc(err.message)}</p>`;
  }
}

if (typeof document !== "undefined") start();
