// Command-line flags for the test tools (npm run sim, npm run fuzz): --name value, --name=value,
// and the named switches, which take no value.
export function parseFlags(argv: string[], switches: string[] = []): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    if (switches.includes(a.slice(2))) {
      m.set(a.slice(2), "1");
      continue;
    }
    const [k, v] = a.includes("=") ? a.slice(2).split("=", 2) : [a.slice(2), argv[++i]];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    m.set(k!, v);
  }
  return m;
}
