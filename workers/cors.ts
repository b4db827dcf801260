// Cross-origin calls from browser apps (CORS), for the origins the CORS_ORIGINS var names: none by
// default, as before. A browser page on another origin could not call the API at all: its
// preflight was a 401 (no token on an OPTIONS) and no answer carried Access-Control-* (a probe of
// the client). Tokens go in a header, never a cookie, so no credentials mode is offered.
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { Env } from "./env.js";
import type { App } from "./http.js";

/**
 * Request headers a browser may send: the token, the body's type and encoding, a watch's resume
 * and the group's life it followed (the client's reconnect sends it: left out, a page's watch
 * could not resume, a review), a read's place.
 */
const allowHeaders = ["Authorization", "Content-Type", "Content-Encoding", "Last-Event-ID", "X-Smr-Incarnation", "X-Smr-Near"];
/** Answer headers a page may read: a refusal's wait, the group's life, where a read was served. */
const exposeHeaders = ["Retry-After", "Allow", "X-Smr-Incarnation", "X-Smr-Replica", "X-Smr-Seq"];
/** How long a browser may keep a preflight's answer (10 minutes: its own cap is 2 hours or less). */
const preflightCacheSec = 600;

/** The origins CORS_ORIGINS allows ("*": any), as browsers send them, and the entries that are not origins. */
export function corsOrigins(raw: string | undefined): { any: boolean; origins: string[]; bad: string[] } {
  const entries = (raw ?? "").split(",").map((e) => e.trim()).filter((e) => e !== "" && e !== "*");
  const bad = entries.filter((e) => originOf(e) === null);
  const origins = [...new Set(entries.map(originOf).filter((o): o is string => o !== null))];
  return { any: (raw ?? "").split(",").some((e) => e.trim() === "*"), origins, bad };
}

/**
 * The origin an entry names as a browser sends it in Origin (`HTTP://Host:80/` is `http://host`:
 * such entries were left out, a probe), or null: not http(s), or a path, a query, a user name.
 */
function originOf(text: string): string | null {
  try {
    const url = new URL(text);
    const bare = url.pathname === "/" && url.search === "" && url.hash === "" && url.username === "" && url.password === "";
    return (url.protocol === "http:" || url.protocol === "https:") && bare ? url.origin : null;
  } catch {
    return null;
  }
}

/** One middleware per value of the var, so a changed var (or a test's env) takes effect at once. */
const handlers = new Map<string, MiddlewareHandler<App>>();

function handlerFor(raw: string): MiddlewareHandler<App> {
  let handler = handlers.get(raw);
  if (handler) return handler;
  const { any, origins, bad } = corsOrigins(raw);
  // Said once per value: an entry that is no origin matched no page, and nothing said why.
  if (bad.length > 0) console.warn(`CORS_ORIGINS: ${bad.map((b) => JSON.stringify(b)).join(", ")} ${bad.length === 1 ? "is not an origin" : "are not origins"} (http(s)://host[:port], no path or query): left out`);
  handler = cors({
    origin: any ? "*" : (origin) => (origins.includes(origin) ? origin : null),
    allowMethods: ["GET", "HEAD", "PUT", "POST", "DELETE"],
    allowHeaders,
    exposeHeaders,
    maxAge: preflightCacheSec,
  });
  handlers.set(raw, handler);
  return handler;
}

/** Before authentication: a preflight carries no token. Without CORS_ORIGINS, nothing changes. */
export const corsMiddleware: MiddlewareHandler<App> = async (c, next) => {
  const raw = (c.env as Env).CORS_ORIGINS;
  // Only a browser's request (it names its Origin): any OPTIONS was a 204 before the token's check
  // and its rate limit (a review).
  if (raw === undefined || raw.trim() === "" || c.req.header("origin") === undefined) return next();
  return handlerFor(raw)(c, next);
};
