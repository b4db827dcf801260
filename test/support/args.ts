// Command-line flags for the test tools (npm run sim, fuzz, profile, compare): --name value,
// --name=value, and the named switches, which take no value.
export function parseFlags(argv: string[], switches: string[] = []): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    // Split at the first "=" only: `--out=a=b.json` wrote to `a` (a review).
    const eq = a.indexOf("=");
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    if (switches.includes(name)) {
      if (eq !== -1) throw new Error(`--${name} takes no value`);
      m.set(name, "1");
      continue;
    }
    const [k, v] = eq === -1 ? [name, argv[++i]] : [name, a.slice(eq + 1)];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    m.set(k!, v);
  }
  return m;
}

/** A tool's usage and options: switches take no value; `counts` are integers of at least their minimum; `choices` one of theirs. */
export interface ToolSpec {
  usage: string;
  switches?: string[];
  counts?: Record<string, number>;
  choices?: Record<string, readonly string[]>;
  /** Other options with a value, taken as given. */
  texts?: string[];
}

/**
 * The options of a tool (npm run profile, compare, fuzz, check-history), or its usage printed and
 * the process ended: exit 0 for --help, 2 for an option it does not know or a value that is none.
 * `npm run profile -- --help` ran a whole profile; `--clients abc` ran with NaN clients (a probe).
 */
export function toolFlags(argv: string[], spec: ToolSpec): Map<string, string> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(spec.usage);
    process.exit(0);
  }
  const refuse = (why: string): never => {
    console.error(`${why}\n${spec.usage}`);
    process.exit(2);
  };
  const counts = spec.counts ?? {};
  const choices = spec.choices ?? {};
  const known = new Set([...(spec.switches ?? []), ...Object.keys(counts), ...Object.keys(choices), ...(spec.texts ?? [])]);
  let flags = new Map<string, string>();
  try {
    flags = parseFlags(argv, spec.switches);
  } catch (err) {
    refuse((err as Error).message);
  }
  for (const [k, v] of flags) {
    if (!known.has(k)) refuse(`unknown option --${k}`);
    if (k in counts && !(/^\d+$/.test(v) && Number(v) >= counts[k]!)) refuse(`--${k} must be an integer of at least ${counts[k]}, not ${JSON.stringify(v)}`);
    if (k in choices && !choices[k]!.includes(v)) refuse(`--${k} must be one of ${choices[k]!.join(", ")}, not ${JSON.stringify(v)}`);
    if (spec.texts?.includes(k) && (v === "" || v.startsWith("--"))) refuse(`--${k} needs a value, not ${JSON.stringify(v)}`);
  }
  return flags;
}
