// Optional CPU pinning (--pin): the proxy under test (relay or dbward) on CPU 1,
// pgbench on CPU 0, the same for every leg. On a small VM the scheduler's
// placement of the proxy next to PostgreSQL's backends otherwise swings one
// build between two throughput modes; pinned rounds are comparable.

let enabled = false;

/** Turns pinning on for every process spawned after this. */
export function setPinning(on: boolean): void {
  enabled = on;
}

/** The command line to spawn, wrapped in `taskset` when pinning is on. */
export function pinned(role: 'proxy' | 'client', cmd: string, args: string[]): [string, string[]] {
  if (!enabled) return [cmd, args];
  return ['taskset', ['-c', role === 'proxy' ? '1' : '0', cmd, ...args]];
}
