// The HTTP app: request ids, authentication, one error handler, and one sub-app per resource
// (workers/routes/). Routes do HTTP only; the control plane is workers/groups.ts.
import { Hono, type Context } from "hono";
import { ApiError } from "../shared/api/errors.js";
import { openApiDocument } from "../shared/api/openapi.js";
import { routes } from "../shared/api/routes.js";
import { corsMiddleware } from "./cors.js";
import { faultsAllowed } from "./faults.js";
import { logEvent } from "../shared/log.js";
import { RateLimiter, bearerOf, groupScopeOf, scopeOf, tokensFrom } from "./auth.js";
import type { Env } from "./env.js";
import { type App, groupParam, routeOf } from "./http.js";
import { commandRoutes } from "./routes/commands.js";
import { groupRoutes } from "./routes/groups.js";
import { memberRoutes } from "./routes/members.js";
import { faultRoutes } from "./routes/faults.js";
import { snapshotRoutes } from "./routes/snapshots.js";
import { tokenRoutes } from "./routes/tokens.js";
import { metricsRoutes } from "./routes/metrics.js";

export const app = new Hono<App>();

// One limiter per configuration, so a changed var (or a test's env) takes effect at once.
const limiters = new Map<string, RateLimiter>();
function rateLimiter(env: Env): RateLimiter {
  const perSec = Number(env.RATE_LIMIT_PER_SEC ?? 1000);
  const burst = Number(env.RATE_LIMIT_BURST ?? 2000);
  const key = `${perSec}/${burst}`;
  let limiter = limiters.get(key);
  if (!limiter) {
    limiter = new RateLimiter(perSec, burst);
    limiters.set(key, limiter);
  }
  return limiter;
}

// ---- errors: one handler maps every failure to the API.md shape ---------------------------

function errorResponse(c: Context<App>, err: ApiError) {
  if (err.retryAfterSec !== undefined) c.header("Retry-After", String(err.retryAfterSec));
  // API.md: a 500's body carries a request id to find it in the logs (a review: a 500 raised as an ApiError had none).
  const requestId = err.code === "internal" ? { requestId: c.get("requestId") } : {};
  return c.json({ error: { code: err.code, message: err.message, ...(err.reason ? { reason: err.reason } : {}), ...requestId } }, err.status as 400);
}

app.onError((err, c) => {
  if (err instanceof ApiError) return errorResponse(c, err);
  const requestId = c.get("requestId") ?? crypto.randomUUID();
  const path = new URL(c.req.url).pathname;
  const group = /^\/v1\/groups\/([^/]+)/.exec(path)?.[1];
  logEvent({ event: "internal-error", group, requestId, message: String(err), method: c.req.method, path, stack: (err as Error)?.stack }, "error");
  return c.json({ error: { code: "internal", message: `internal error; request id ${requestId}`, requestId } }, 500);
});

// A path that exists under other methods stays a 404 (API.md's codes are fixed: "no such route"),
// but says which methods it takes, and sets Allow as a 405 would.
app.notFound((c) => {
  const path = new URL(c.req.url).pathname;
  const allowed = methodsOf(path, faultsAllowed(c.env));
  if (allowed.length > 0) c.header("Allow", allowed.join(", "));
  const takes = allowed.length > 0 ? ` (${path} takes ${allowed.join(", ")})` : "";
  return errorResponse(c, new ApiError("not_found", `no route ${c.req.method} ${path}${takes}`));
});

/**
 * The methods API routes take at this path (`routes`, the one list; its {param} is one segment).
 * Test-only routes count only where they are served (ALLOW_FAULTS).
 */
function methodsOf(path: string, testRoutes: boolean): string[] {
  const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const matches = (template: string) => new RegExp(`^${template.split(/\{[^}]+\}/).map(literal).join("[^/]+")}$`).test(path);
  return [...new Set(routes.filter((r) => (testRoutes || !r.testOnly) && matches(r.path)).map((r) => r.method.toUpperCase()))];
}

app.use("*", async (c, next) => {
  c.set("requestId", crypto.randomUUID());
  await next();
});

// ---- auth ----------------------------------------------------------------------------------

app.get("/healthz", (c) => c.json({ ok: true }));
// The API's description needs no token (API.md); /docs, its reader, is a static asset (public/).
app.get("/openapi.json", (c) => c.json(openApiDocument()));

// Before the token's check: a browser's preflight (OPTIONS) carries none.
app.use("/v1/*", corsMiddleware);

app.use("/v1/*", async (c, next) => {
  const tokens = tokensFrom(c.env);
  if (tokens.admin === null && tokens.clients.length === 0) {
    throw new ApiError("not_configured", "no ADMIN_TOKEN or CLIENT_TOKENS configured; the API is closed", 60);
  }
  const header = c.req.header("authorization");
  const token = bearerOf(header);
  // A header that is there but not one `Bearer <token>` is said so (it was "missing", a probe).
  if (token === null) throw new ApiError("unauthorized", header ? "malformed Authorization: expected Bearer <token>, the token one word" : "missing Authorization: Bearer <token>");
  // The platform's caller address; "local" under wrangler dev and in tests when it is absent.
  const address = c.req.header("cf-connecting-ip") ?? "local";
  const scope = scopeOf(tokens, token) ?? (await groupScopeOf(c.env, token, address));
  if (!scope) throw new ApiError("unauthorized", "unknown token");
  const wait = rateLimiter(c.env).take(token, Date.now());
  if (wait > 0) throw new ApiError("rate_limited", "request rate limit for this token exceeded", wait);
  c.set("scope", scope);
  await next();
});

// A group token is checked against its group's life before any route acts (routeOf): some routes
// call the group's objects without looking its route up.
// Only that refusal: a lookup that fails here is the route's to answer (a group token on an admin
// route is a 403 first, whatever the group's state). `/:group/*` matches `/:group` too.
const tokenLife = async (c: Context<App>, next: () => Promise<void>) => {
  if (c.get("scope").kind === "group") {
    await routeOf(c, groupParam(c)).catch((err: unknown) => {
      if (err instanceof ApiError && err.code === "unauthorized") throw err;
    });
  }
  await next();
};
app.use("/v1/groups/:group/*", tokenLife);

// ---- the resources ---------------------------------------------------------------------------

app.route("/v1/groups", groupRoutes);
app.route("/v1/groups", commandRoutes);
app.route("/v1/groups", memberRoutes);
app.route("/v1/groups", tokenRoutes);
app.route("/v1/groups", faultRoutes);
app.route("/v1/groups", snapshotRoutes);
app.route("/v1/metrics", metricsRoutes);
