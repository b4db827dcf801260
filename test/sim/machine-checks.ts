// The checks behind `npm run check-machine -- NAME` (docs/MACHINES.md): a static scan of the
// machine's source for clocks, randomness and I/O; its commands applied twice to cloned states;
// and the simulator running it on several replicas under faults. Each returns what it found.
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { tsImport } from "tsx/esm/api";
import { validateCommand, validateQuery } from "../../shared/api/commands.js";
import type { ApplyContext, StateMachine } from "../../shared/machines/types.js";
import { MemoryRowStore } from "../../shared/protocol/memory.js";
import { type Changes, DigestedState, machinePrefix } from "../../shared/protocol/state.js";
import { Prng } from "./prng.js";
import { type FaultKind, reproduce, simulate } from "./run.js";
import { materialized } from "../../shared/machines/output.js";

// ---- static ------------------------------------------------------------------------------------

export interface Finding {
  file: string;
  line: number;
  what: string;
}

/** Globals that read a clock, draw randomness, schedule work or reach outside the process. */
const bannedGlobals = new Set(["Date", "Intl", "crypto", "fetch", "performance", "setTimeout", "setInterval", "setImmediate", "queueMicrotask", "process", "XMLHttpRequest", "WebSocket"]);
/** The global object's names: `globalThis.Date` is the clock as much as `Date` is. */
const globalObjects = new Set(["globalThis", "self", "window", "global"]);
/** Methods whose answer depends on the runtime's locale data (MACHINES.md: sort by code point). */
const localeMethods = new Set(["localeCompare", "toLocaleString", "toLocaleDateString", "toLocaleTimeString", "toLocaleUpperCase", "toLocaleLowerCase"]);
/** Modules a machine may not import: I/O, clocks, randomness, timers. */
const bannedModules = /^(node:|cloudflare:)|^(crypto|fs|fs\/promises|net|http|https|http2|dgram|dns|child_process|perf_hooks|timers|os|worker_threads)$/;

/**
 * Scans a machine's file and the files it imports relatively (transitively) for what a
 * deterministic machine must not use. Syntax-aware: comments and property names (`x.date`,
 * `{ fetch: 1 }`) do not count; `Math.random`, `globalThis["Date"]` and banned imports do.
 */
export function staticCheck(entry: string, root = process.cwd()): Finding[] {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  const queue = [resolve(entry)];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
    const at = (node: ts.Node, what: string) =>
      findings.push({ file: relative(root, file), line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what });
    const visit = (node: ts.Node): void => {
      const imported = importedModule(node);
      if (imported !== null) {
        if (imported.spec === null) at(node, "imports a module named at run time");
        else if (imported.spec.startsWith(".")) queue.push(resolve(dirname(file), imported.spec.replace(/\.js$/, ".ts")));
        else if (bannedModules.test(imported.spec)) at(node, `imports ${imported.spec}`);
      } else if (ts.isIdentifier(node) && bannedGlobals.has(node.text) && !isPropertyName(node)) {
        at(node, `uses ${node.text}`);
      } else if (ts.isPropertyAccessExpression(node) && ownerName(node.expression, source) === "Math" && node.name.text === "random") {
        at(node, "uses Math.random");
      } else if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression) && globalObjects.has(node.expression.text) && bannedGlobals.has(node.name.text)) {
        at(node, `uses ${node.name.text}`);
      } else if (ts.isPropertyAccessExpression(node) && localeMethods.has(node.name.text)) {
        at(node, `uses ${node.name.text}`);
      } else if (ts.isElementAccessExpression(node) && ts.isStringLiteralLike(node.argumentExpression)) {
        const name = node.argumentExpression.text;
        if (bannedGlobals.has(name) || (name === "random" && node.expression.getText(source) === "Math")) at(node, `uses ${name} by name`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return findings;
}

/** The module an import or export declaration, `import(...)` or `require(...)` names (spec null: not a string literal), or null if node is none of them. */
function importedModule(node: ts.Node): { spec: string | null } | null {
  if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
    return { spec: ts.isStringLiteral(node.moduleSpecifier) ? node.moduleSpecifier.text : null };
  }
  if (ts.isCallExpression(node) && (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === "require"))) {
    const arg = node.arguments[0];
    return { spec: arg !== undefined && ts.isStringLiteralLike(arg) ? arg.text : null };
  }
  return null;
}

/** `Math` for `Math` and `globalThis.Math` alike. */
function ownerName(expression: ts.Expression, source: ts.SourceFile): string {
  if (ts.isPropertyAccessExpression(expression) && ts.isIdentifier(expression.expression) && globalObjects.has(expression.expression.text)) return expression.name.text;
  return expression.getText(source);
}

/** A name after a dot or before a colon: a property, not the global of that name. */
function isPropertyName(node: ts.Identifier): boolean {
  const p = node.parent;
  return (
    (ts.isPropertyAccessExpression(p) && p.name === node) ||
    ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p) || ts.isMethodSignature(p)) && p.name === node)
  );
}

// ---- commands twice on cloned states -----------------------------------------------------------

/**
 * A second instance of the machine exported as `name` from `file`: the module evaluated again, so
 * its module-level variables start empty, as on a replica that restarted or was rebuilt by state
 * transfer, and so do those of every module it imports (relatively or not). Copies of the state in
 * one process share the first instance's: a memo table filled by an idempotent insert agreed with
 * itself on every clone and in the simulator.
 */
export async function freshInstance(file: string, name: string): Promise<StateMachine<any, any>> {
  // tsx's tsImport loads the file in a namespace of its own, and every module it imports with it:
  // a `?fresh=` query renewed the machine's own file only, and a memo table kept in a module it
  // imports (a machine split over files, as the static check allows) was shared and passed.
  const module = (await tsImport(pathToFileURL(resolve(file)).href, import.meta.url)) as Record<string, unknown>;
  const found = Object.values(module).find((v): v is StateMachine<any, any> => typeof v === "object" && v !== null && (v as StateMachine).name === name && typeof (v as StateMachine).apply === "function");
  if (!found) throw new Error(`${file} exports no machine named ${name}`);
  return found;
}

export interface CloneCheckOptions {
  seed: number;
  /** Commands applied before the checked ones, so they meet a state with rows in it. */
  prefix: number;
  /** Commands each applied to two clones of the state (and queries run on both). */
  commands: number;
  /**
   * Another instance of the machine's module (freshInstance): the second clone runs it, so state
   * kept outside the rows (module-level variables, caches, memo tables) shows as a difference.
   */
  fresh?: StateMachine<any, any>;
}

const startMs = Date.UTC(2026, 0, 1);
const failuresMax = 10;

/** An independent copy: its rows saved into a new store, the digest carried over. */
function cloneState(state: DigestedState): DigestedState {
  state.save();
  const rows = new MemoryRowStore();
  rows.writeMany(state.rows.scan("", null, Infinity), []);
  return new DigestedState(rows, state.digest);
}

function rowsOf(state: DigestedState): string {
  state.save();
  return JSON.stringify(state.rows.scan("", null, Infinity));
}

/** JSON exactly as a replica stores it (key order included: the session row is digested as text). */
function text(value: unknown): string {
  try {
    return JSON.stringify(value) ?? "undefined";
  } catch (err) {
    return `unserializable (${(err as Error).message})`;
  }
}

type Outcome = { output: string } | { threw: string };
const show = (o: Outcome) => ("output" in o ? o.output : `an exception (${o.threw})`);

function applyOnce(machine: StateMachine<any, any>, state: DigestedState, command: unknown, ctx: ApplyContext, changes?: Changes): Outcome {
  try {
    const output = materialized(machine.apply(state.machineView(changes), structuredClone(command), ctx));
    return { output: text(output) };
  } catch (err) {
    return { threw: String(err instanceof Error ? err.message : err) };
  } finally {
    state.endStep();
  }
}

/**
 * Applies the machine's generated commands to a state, each one also to two clones of the state
 * before it: the outputs, digests and rows must be equal (hidden state, a clock or randomness
 * shows as a difference). Queries must answer alike and write nothing. Finally the whole sequence
 * is replayed on a fresh state: it must end at the same digest with the same outputs.
 */
export function cloneCheck(machine: StateMachine<any, any>, o: CloneCheckOptions): string[] {
  const failures: string[] = [];
  const fail = (m: string) => failures.length < failuresMax && failures.push(m);
  const rng = new Prng(o.seed);
  const main = new DigestedState(new MemoryRowStore());
  const applied: { command: unknown; ctx: ApplyContext; outcome: Outcome }[] = [];
  let nowMs = startMs;
  for (let i = 1; i <= o.prefix + o.commands && failures.length === 0; i++) {
    const command = machine.generate.command(rng);
    const valid = validateCommand(machine, command);
    if (!valid.ok) {
      fail(`the generator made an invalid command ${text(command)}: ${valid.message}`);
      break;
    }
    nowMs += rng.int(1_000);
    const ctx: ApplyContext = { seq: i, timestamp: new Date(nowMs).toISOString() };
    const what = `command ${i} ${text(command)}`;
    if (i > o.prefix) {
      const [a, b] = [cloneState(main), cloneState(main)];
      const [outA, outB] = [applyOnce(machine, a, command, ctx), applyOnce(o.fresh ?? machine, b, command, ctx)];
      if (text(outA) !== text(outB)) fail(`${what} gave ${show(outA)} on one copy of the state and ${show(outB)} on another`);
      else if (a.digest !== b.digest || rowsOf(a) !== rowsOf(b)) fail(`${what} left two copies of the state with different rows`);
      // The commands said to grow no state (StateMachine.goesAtQuota) are all a full group orders.
      else if (machine.goesAtQuota?.test(command) && rowsOf(a).length > rowsOf(main).length) fail(`${what} goes at the storage quota (goesAtQuota) but grew the state's rows from ${rowsOf(main).length} to ${rowsOf(a).length} characters`);
      checkQuery(machine, o.fresh ?? machine, rng, a, b, fail);
    }
    const changes: Changes = new Map();
    const outcome = applyOnce(machine, main, command, ctx, changes);
    if ("threw" in outcome) fail(`${what} threw: ${outcome.threw}`);
    // Every row as it is written, not only those left at the end: a snapshot taken between two
    // commands holds it, and a restore of that file is refused.
    for (const [key, value] of changes) {
      const problem = value === null ? null : (machine.checkRow?.(key, JSON.parse(value)) ?? null);
      if (problem !== null) fail(`${what} wrote the row [${text(key)},${value}], which checkRow refuses (a restore of a snapshot taken then would too): ${problem}`);
    }
    // And the rows together, as a restore's checkState sees them (a rule across rows breaks between two entries as well).
    const across = changes.size > 0 ? stateProblem(machine, main) : null;
    if (across !== null) fail(`${what} left a state checkState refuses (a restore of a snapshot taken then would too): ${across}`);
    applied.push({ command, ctx, outcome });
  }
  if (failures.length > 0) return failures;
  const again = new DigestedState(new MemoryRowStore());
  for (const [i, a] of applied.entries()) {
    const outcome = applyOnce(machine, again, a.command, a.ctx);
    if (text(outcome) !== text(a.outcome)) {
      fail(`replayed from the start, command ${i + 1} ${text(a.command)} gave ${show(outcome)}, the first time ${show(a.outcome)}`);
      break;
    }
  }
  if (failures.length === 0 && again.digest !== main.digest) fail("replayed from the start, the same commands end at another digest");
  if (failures.length === 0) checkRows(machine, main, fail);
  // The replay holds every row unsaved (a replica between saves); the first state saved each one
  // (a replica just after a save): a query must not tell them apart.
  for (let i = 0; i < o.commands && failures.length === 0; i++) {
    const query = machine.generate.query(rng);
    const [saved, unsaved] = [answer(machine, main, query), answer(machine, again, query)];
    if (saved !== unsaved) fail(`query ${text(query)} answered ${saved} with the rows saved and ${unsaved} with them unsaved`);
  }
  return failures;
}

/** What the machine's checkState says of the state's rows, in key order as a restore feeds them (null: nothing, or no checkState). */
function stateProblem(machine: StateMachine<any, any>, state: DigestedState): string | null {
  const across = machine.checkState?.();
  if (!across) return null;
  state.save();
  for (const [stored, value] of state.rows.scan(machinePrefix, null, Infinity)) across.row(stored.slice(machinePrefix.length), JSON.parse(value));
  return across.end();
}

/** Every row the commands left, and the rows together, must be what a restore accepts (checkRow, checkState). */
function checkRows(machine: StateMachine<any, any>, state: DigestedState, fail: (m: string) => void): void {
  if (!machine.checkRow && !machine.checkState) return;
  state.save();
  const across = machine.checkState?.();
  for (const [stored, value] of state.rows.scan(machinePrefix, null, Infinity)) {
    const key = stored.slice(machinePrefix.length);
    const problem = machine.checkRow?.(key, JSON.parse(value)) ?? null;
    if (problem !== null) fail(`the commands wrote the row [${text(key)},${value}], which checkRow refuses (a restore would too): ${problem}`);
    across?.row(key, JSON.parse(value));
  }
  const problem = across?.end() ?? null;
  if (problem !== null) fail(`the commands left a state checkState refuses (a restore would too): ${problem}`);
}

function checkQuery(machine: StateMachine<any, any>, other: StateMachine<any, any>, rng: Prng, a: DigestedState, b: DigestedState, fail: (m: string) => void): void {
  const query = machine.generate.query(rng);
  const valid = validateQuery(machine, query);
  if (!valid.ok) return void fail(`the generator made an invalid query ${text(query)}: ${valid.message}`);
  const before = a.digest;
  const [ra, rb] = [answer(machine, a, query), answer(other, b, query)];
  if (ra !== rb) fail(`query ${text(query)} answered ${ra} on one copy of the state and ${rb} on another`);
  if (a.digest !== before) fail(`query ${text(query)} changed the state (a query must only read)`);
}

function answer(machine: StateMachine<any, any>, state: DigestedState, query: unknown): string {
  try {
    return text(machine.query(state.machineView(), structuredClone(query)));
  } catch (err) {
    return `an exception (${(err as Error).message})`;
  } finally {
    state.endStep();
  }
}

// ---- the simulator -----------------------------------------------------------------------------

export interface SimCheckOptions {
  seeds: number[];
  replicas: number[];
  ops: number;
  faults: FaultKind[];
}

/** The faults check-machine runs under by default. */
export const checkFaults: FaultKind[] = ["drop", "reorder", "crash-replica", "crash-sequencer", "partition"];

/**
 * Runs the simulator with the machine (outputs voted on by a majority) over every seed and replica
 * count: its checkers compare every replica's digests and every acknowledged output with a
 * reference replay of the log, and every read with the reference state at its position.
 */
export async function simCheck(machine: string | StateMachine<any, any>, o: SimCheckOptions, onRun?: (line: string) => void): Promise<string[]> {
  const failures: string[] = [];
  for (const replicas of o.replicas) {
    for (const seed of o.seeds) {
      const opts = { seed, ops: o.ops, replicas, faults: o.faults, machine, outputs: "majority" as const };
      const r = await simulate(opts);
      onRun?.(`  ${replicas} replicas, seed ${seed}: ${r.failures.length === 0 ? "ok" : `${r.failures.length} failures`} (${r.stats.acked ?? 0} acknowledged, ${r.stats.reads ?? 0} reads)`);
      for (const f of r.failures.slice(0, 3)) failures.push(`${replicas} replicas, seed ${seed}: ${f}`);
      if (r.failures.length > 0 && typeof machine === "string") failures.push(`  reproduce: ${reproduce(opts)}`);
    }
  }
  return failures;
}
