#!/usr/bin/env node
// `smr` (npx smr, npm run smr --): the operator's CLI, cli/main.ts. The project has no build step,
// so the TypeScript runs through tsx's ESM loader (tsx is installed by `npm ci`), scoped to this
// import and using the project's own tsconfig wherever the command is run from.
import { fileURLToPath } from "node:url";
import { tsImport } from "tsx/esm/api";

await tsImport("../cli/main.ts", { parentURL: import.meta.url, tsconfig: fileURLToPath(new URL("../tsconfig.json", import.meta.url)) });
