// The quorum, in one place (after etcd raft's quorum/majority.go): a majority of the voting
// members of a configuration. Every tally counts through it: commit positions, output votes, the
// session answers of a retry, audit verdicts, and a recovery's fence. Joining (non-voting) members
// never count; a voter that is quarantined still counts toward the size of the quorum (it is a
// member that may not vote now), which is what keeps two disjoint majorities from existing.
export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export class MajorityConfig {
  readonly voters: ReadonlySet<string>;

  constructor(voters: Iterable<string>) {
    this.voters = new Set(voters);
  }

  get size(): number {
    return this.voters.size;
  }

  /** How many of the voters must agree. */
  get need(): number {
    return majority(this.voters.size);
  }

  /** Whether the voters among `ids` are a quorum (non-voters in `ids` are ignored). */
  reached(ids: Iterable<string>): boolean {
    let n = 0;
    for (const id of new Set(ids)) if (this.voters.has(id)) n++;
    return n >= this.need;
  }

  /**
   * The highest position a quorum of voters has reached: the need-th highest of their positions
   * (a voter without one counts as 0), or null if there are no voters.
   */
  committed(positionOf: (id: string) => number | null): number | null {
    if (this.voters.size === 0) return null;
    const positions = [...this.voters].map((id) => positionOf(id) ?? 0).sort((a, b) => b - a);
    return positions[this.need - 1]!;
  }
}

/** Every configuration in force at once (a change under way): each must reach its own quorum. */
export class JointConfig {
  constructor(readonly configs: MajorityConfig[]) {}

  reached(ids: Iterable<string>): boolean {
    const set = [...ids];
    return this.configs.every((c) => c.reached(set));
  }
}
