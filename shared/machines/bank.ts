import { z } from "zod";
import { accountCharsMax, queryResultBytesMax } from "../limits.js";
import { type MachineState, ResultTooLarge, type StateMachine } from "./types.js";

const account = z.string().min(1).max(accountCharsMax);
const amount = z.number().int().refine(Number.isSafeInteger, { message: "must be a safe integer" });

// Bounds as zod checks, not refinements: the same message, and the OpenAPI document (made from
// these schemas) says them too (a refine is invisible to it: it allowed a balance of -1 and an
// amount of 0 that the router refuses).
const bankCommand = z.discriminatedUnion("op", [
  z.object({ op: z.literal("open"), account, balance: amount.min(0, "must be >= 0") }).strict(),
  z.object({ op: z.literal("transfer"), from: account, to: account, amount: amount.gt(0, "must be > 0") }).strict(),
]);
export type BankCommand = z.infer<typeof bankCommand>;

const bankQuery = z.discriminatedUnion("op", [z.object({ op: z.literal("balances") }).strict()]);
export type BankQuery = z.infer<typeof bankQuery>;

const scanPageRows = 1_000;

export const bank: StateMachine<BankCommand, BankQuery> = {
  name: "bank",
  commandSchema: bankCommand,
  querySchema: bankQuery,

  apply(state: MachineState, c: BankCommand): unknown {
    if (c.op === "open") {
      if (state.get<number>(c.account) !== null) return { ok: false };
      state.put(c.account, c.balance);
      return { ok: true };
    }
    const from = state.get<number>(c.from);
    const to = state.get<number>(c.to);
    if (from === null || to === null) return { ok: false, reason: "unknown_account" };
    if (from < c.amount) return { ok: false, reason: "insufficient" };
    if (c.from === c.to) return { ok: true };
    // A credit that would leave the safe-integer range is refused like an overdraft would be (the
    // total stays conserved and exact); API.md has two reasons, so `detail` says which limit it was.
    if (!Number.isSafeInteger(to + c.amount)) return { ok: false, reason: "insufficient", detail: "overflow" };
    state.put(c.from, from - c.amount);
    state.put(c.to, to + c.amount);
    return { ok: true };
  },

  keysOf(c: BankCommand): string[] {
    return c.op === "open" ? [c.account] : [c.from, c.to];
  },

  // Balances are what open and transfer write: a restored "lots" or -5 made every balances query
  // throw (BigInt) and transfers compare strings.
  checkRow(name: string, balance: unknown): string | null {
    // Counted as the commands' schema counts (code points, zod's max): counted in UTF-16 units, an
    // account of 65 to 128 emoji was opened by a command and refused by every restore of its snapshot.
    if (!account.safeParse(name).success) return `account: longer than ${accountCharsMax} characters`;
    if (typeof balance !== "number" || !Number.isSafeInteger(balance) || balance < 0) return `the balance of ${JSON.stringify(name)}: a safe integer >= 0`;
    return null;
  },

  query(state: MachineState): unknown {
    const accounts: Record<string, number> = {};
    let total = 0n;
    let bytes = 0;
    let after: string | null = null;
    for (;;) {
      const rows: [string, number][] = state.scan<number>("", after, scanPageRows);
      for (const [name, balance] of rows) {
        bytes += 2 * name.length + 24;
        if (bytes > queryResultBytesMax) {
          throw new ResultTooLarge(`balances: the accounts do not fit one answer (over ${queryResultBytesMax} bytes at ${Object.keys(accounts).length} accounts); a snapshot (GET /v1/groups/{group}/snapshot) lists them all`);
        }
        // Defined, not assigned: `accounts["__proto__"] = n` would set the prototype instead.
        Object.defineProperty(accounts, name, { value: balance, enumerable: true, writable: true, configurable: true });
        total += BigInt(balance);
      }
      if (rows.length < scanPageRows) break;
      after = rows[rows.length - 1]![0];
    }
    // Balances are safe integers, their sum need not be: past 2^53 - 1 `total` (a JSON number) is
    // the nearest double and `totalExact` carries every digit.
    const exact = total <= BigInt(Number.MAX_SAFE_INTEGER);
    return exact ? { accounts, total: Number(total) } : { accounts, total: Number(total), totalExact: total.toString() };
  },

  // Transfers among a few accounts, some of them not open yet, and opens of them.
  generate: {
    command(rng): BankCommand {
      // One name at the bound in characters above U+FFFF (two UTF-16 units each): a restore
      // counted units, and refused an account `open` took (npm run check-machine now sees it).
      const accounts = ["a", "b", "c", "d", "\u{1F600}".repeat(accountCharsMax)];
      if (rng.chance(0.2)) return { op: "open", account: rng.pick(accounts), balance: rng.int(1000) };
      const from = rng.pick(accounts);
      const to = rng.pick(accounts.filter((a) => a !== from));
      return { op: "transfer", from, to, amount: 1 + rng.int(300) };
    },
    query(): BankQuery {
      return { op: "balances" };
    },
  },
};
