// npm run check-history -- FILE: prints "linearizable" (exit 0) or "not linearizable" with the
// smallest failing key's operations (exit 1). Exit 2 on unreadable input.
import { readFileSync } from "node:fs";
import { checkHistory, parseHistory } from "./linearizability.js";

const usage = `usage: npm run check-history -- FILE
  FILE: {"model":"kv","operations":[{"client","call","return","input","output"}]} (docs/SIMULATOR.md);
  prints "linearizable" (exit 0), or "not linearizable" with the smallest failing key's operations
  (exit 1); exit 2 on unreadable input`;
const file = process.argv[2];
if (file === "--help" || file === "-h") {
  console.log(usage);
  process.exit(0);
}
if (!file || process.argv.length > 3) {
  console.error(usage);
  process.exit(2);
}
let history;
try {
  history = parseHistory(readFileSync(file, "utf8"));
} catch (err) {
  console.error(`cannot read ${file}: ${(err as Error).message}`);
  process.exit(2);
}
const started = performance.now();
const result = checkHistory(history);
const ms = Math.round(performance.now() - started);
if (result.linearizable) {
  console.log("linearizable");
  console.error(`(${result.operations} operations over ${result.keys} keys in ${ms} ms)`);
  process.exit(0);
}
console.log("not linearizable");
console.log(`key ${JSON.stringify(result.key)}: ${result.operations.length} operations`);
for (const o of [...result.operations].sort((a, b) => a.call - b.call)) console.log(JSON.stringify(o));
process.exit(1);
