#!/usr/bin/env node
// `smr` (npx smr, npm run -s smr --): the operator's CLI, cli/main.ts. The project has no build step,
// so the TypeScript runs through tsx's ESM loader (tsx is installed by `npm ci`), scoped to this
// import and using the project's own tsconfig wherever the command is run from.
import { fileURLToPath } from "node:url";
import { tsImport } from "tsx/esm/api";

// `npm run smr -- batch g file` runs in the project's folder: a relative path is the caller's
// (INIT_CWD), as under npx (a probe: ENOENT for a file in the folder it was run from).
// Only from inside this project: `npm --prefix ../edge-smr run smr` from elsewhere keeps the
// project's folder, where .dev.vars is (a review).
const root = fileURLToPath(new URL("..", import.meta.url));
const from = process.env.INIT_CWD;
if (process.env.npm_lifecycle_event === "smr" && from && (from + "/").startsWith(root)) process.chdir(from);
await tsImport("../cli/main.ts", { parentURL: import.meta.url, tsconfig: fileURLToPath(new URL("../tsconfig.json", import.meta.url)) });
