import { startServer } from "../test/support/server.js";
const idleMs = Number(process.argv[2] ?? 90_000);
const s = await startServer({ adminToken: "a", clientTokens: ["c"], faults: true });
const call = async (method: string, path: string, token: string, body?: unknown) => {
  const res = await fetch(s.url + path, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }), signal: AbortSignal.timeout(30_000) });
  const t = await res.text();
  return { status: res.status, body: t ? JSON.parse(t) : null };
};
const g = "idle";
console.log((await call("PUT", `/v1/groups/${g}`, "a", { machine: "kv", replicas: 3 })).status);
let req = 0;
for (let i = 0; i < 5; i++) console.log((await call("POST", `/v1/groups/${g}/commands`, "c", { client: "w", request: ++req, command: { op: "put", key: "k", value: i } })).status);
console.log("idle", idleMs);
await new Promise((r) => setTimeout(r, idleMs));
const cut = Date.now();
console.log((await call("POST", `/v1/groups/${g}/faults`, "a", { target: "sequencer", fault: "unreachable" })).status);
const r = ++req;
for (;;) {
  const t0 = Date.now();
  const w = await call("POST", `/v1/groups/${g}/commands`, "c", { client: "w", request: r, command: { op: "put", key: "k", value: 99 } });
  console.log(Date.now() - cut, "ms", w.status, Date.now() - t0, "ms call", w.body?.error?.message ?? "");
  if (w.status === 200) break;
  await new Promise((res) => setTimeout(res, 100));
}
const ev = (await call("GET", `/v1/groups/${g}/events`, "c")).body.events.filter((e: any) => e.kind === "failover");
console.log(JSON.stringify(ev));
await s.close();
