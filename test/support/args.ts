// Command-line flags for the test tools (npm run sim, npm run fuzz): --name value, --name=value,
// and the named switches, which take no value.
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
