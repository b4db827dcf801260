// The dashboard's files as the real server serves them (Workers static assets before the worker;
// the workerd pool's SELF calls the worker directly, past the assets, so this is tested here).
import { describe, expect, it } from "vitest";
import { serverFixture } from "../support/fixture.js";

const server = serverFixture("dashboard");
const get = (path: string) => fetch(server.url() + path, { redirect: "manual" });

describe("the dashboard", () => {
  it("GET /dashboard needs no token and serves the page, whose script and style come from this origin", async () => {
    const page = await get("/dashboard");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await page.text();
    const all = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    // The empty icon (`data:,`) loads nothing: without it the browser asked for /favicon.ico, a 404.
    expect(all.filter((r) => r.startsWith("data:"))).toEqual(["data:,"]);
    const refs = all.filter((r) => !r.startsWith("data:"));
    expect(refs.sort()).toEqual(["/dashboard.css", "/dashboard.js"]);
    // Nothing loaded from another origin: no absolute URL in the page or the files it loads.
    expect(html).not.toMatch(/https?:\/\//);
    for (const ref of refs) {
      const r = await get(ref);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toMatch(ref.endsWith(".js") ? /javascript/ : /^text\/css/);
      expect(await r.text()).not.toMatch(/https?:\/\//);
    }
  });

  it("every other path still reaches the worker", async () => {
    expect(await (await get("/healthz")).json()).toEqual({ ok: true });
    expect((await get("/v1/groups")).status).toBe(401);
    expect((await server.call("GET", "/v1/groups", server.admin)).status).toBe(200);
    const missing = await get("/nothing-here");
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).error.code).toBe("not_found");
  });
});
