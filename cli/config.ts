// Where the CLI sends its requests and with which token: --url/--token, else SMR_URL/SMR_TOKEN,
// else (inside the project) the tokens `npm start` wrote to .dev.vars and the local dev server.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { UsageError } from "./args.js";
import { sendableToken, urlProblem } from "../shared/client/index.js";

export const defaultUrl = "http://localhost:8787";

export interface Target {
  url: string;
  token: string | undefined;
  /** Where the URL and the token came from, for `smr config` and error messages (never the secret). */
  urlFrom: string;
  tokenFrom: string;
}

/** The .dev.vars of the project the directory is in: looked for upwards, up to the folder with package.json. */
export function findDevVars(cwd: string): string | undefined {
  for (let dir = cwd; ; dir = dirname(dir)) {
    const file = join(dir, ".dev.vars");
    if (existsSync(file)) return file;
    if (existsSync(join(dir, "package.json")) || dirname(dir) === dir) return undefined;
  }
}

/** KEY=VALUE lines (wrangler's dotenv format): `#` comments, optional `export `, optional quotes. */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(raw);
    if (!m) continue;
    let value = m[2]!;
    // A quoted value may be followed by a comment, as wrangler's dotenv reads it (`"tok" # c` was sent with its quotes, a probe).
    const quoted = /^(["'])(.*?)\1(?:\s+#.*)?$/.exec(value);
    if (quoted) value = quoted[2]!;
    else value = value.replace(/\s+#.*$/, "");
    vars[m[1]!] = value;
  }
  return vars;
}

/** Whether the URL names this machine (localhost, 127.0.0.0/8, ::1). */
function loopback(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "localhost" || host.endsWith(".localhost") || /^127(\.\d{1,3}){3}$/.test(host) || host === "[::1]";
  } catch {
    return true; // not a URL at all: checkTarget says so, naming it
  }
}

export function resolveTarget(flags: { url?: string; token?: string }, env: NodeJS.ProcessEnv, cwd: string): Target {
  const [url, urlFrom] = flags.url ? [flags.url, "--url"] : env.SMR_URL ? [env.SMR_URL, "SMR_URL"] : [defaultUrl, "default"];
  const target: Target = { url: url.replace(/\/+$/, ""), urlFrom, token: undefined, tokenFrom: "none" };
  if (flags.token) return { ...target, token: flags.token, tokenFrom: "--token" };
  if (env.SMR_TOKEN) return { ...target, token: env.SMR_TOKEN, tokenFrom: "SMR_TOKEN" };
  // The dev server's tokens go to a dev server only: `--url https://prod...` inside the project
  // sent them to whatever server it named.
  if (!loopback(target.url)) return { ...target, tokenFrom: "none (.dev.vars is used only for a server on this machine)" };
  const file = findDevVars(cwd);
  if (!file) return target;
  const vars = parseDevVars(readFileSync(file, "utf8"));
  if (vars.ADMIN_TOKEN) return { ...target, token: vars.ADMIN_TOKEN, tokenFrom: `${file} (ADMIN_TOKEN)` };
  const first = vars.CLIENT_TOKENS?.split(",")[0]?.trim();
  if (first) return { ...target, token: first, tokenFrom: `${file} (CLIENT_TOKENS)` };
  return target;
}

/**
 * A target a request can be made to, else a usage error (exit 2) that names where the value came
 * from. `--url localhost:8811` (no scheme) and a token holding a line break cannot be sent at all:
 * a command retried them for its whole 90 s, then said it "may have taken effect", and the token's
 * error message printed the secret (a probe). The token is never echoed.
 */
export function checkTarget(t: Target): void {
  switch (urlProblem(t.url)) {
    case "scheme":
      throw new UsageError(`${t.urlFrom === "default" ? "the URL" : t.urlFrom} ${JSON.stringify(t.url)} is not an http:// or https:// URL (e.g. http://localhost:8787)`);
    case "credentials":
      throw new UsageError(`${t.urlFrom} holds a user name or password: pass the token with --token or SMR_TOKEN instead`);
    case "query":
      throw new UsageError(`${t.urlFrom} ${JSON.stringify(t.url)} has a query or a fragment: give the server's base URL (e.g. http://localhost:8787)`);
  }
  if (t.token !== undefined && !sendableToken(t.token)) {
    throw new UsageError(`the token from ${t.tokenFrom} cannot be sent: it holds a space, a line break, a control character, or a character outside ASCII`);
  }
}
