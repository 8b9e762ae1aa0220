// Command-line options for bench/run.ts.

export type Endpoint = 'direct' | 'relay' | 'dbward';
export const ALL_ENDPOINTS: readonly Endpoint[] = ['direct', 'relay', 'dbward'];

export interface BenchArgs {
  duration: number;
  rounds: number;
  scale: number;
  only: RegExp | null;
  dbwardConfig: string | null;
  /** Run dbward from this directory's dist/ (a saved build to compare against) instead of the repository's. */
  dbwardRoot: string | null;
  endpoints: Endpoint[];
  /** Also run the -C connection-setup scenario. */
  connect: boolean;
  /** Pin the proxy to CPU 1 and pgbench to CPU 0 (taskset). */
  pin: boolean;
}

const USAGE = `usage: npm run bench -- [options]
  --duration S          seconds per pgbench run (default 10)
  --rounds N            interleaved rounds per scenario; median is reported (default 3)
  --scale N             pgbench -i scale factor for dbward_bench (default 10)
  --only PATTERN        run only scenarios whose id matches PATTERN (regex, e.g. 'select-simple|tpcb')
  --endpoints LIST      comma list of direct,relay,dbward (default all three)
  --connect             also measure connection setup cost (pgbench -C)
  --pin                 pin the proxy to CPU 1 and pgbench to CPU 0 (taskset), every leg alike
  --dbward-config FILE  start dbward with this config instead of the generated one
                        (it must route database dbward_bench to 127.0.0.1:5432 as user root)
  --dbward-root DIR     run dbward from DIR/dist/cli/main.js (a saved build; DIR needs
                        package.json, schemas/ and node_modules/ next to dist/)`;

function positiveInt(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} wants a positive integer, got ${v}`);
  return n;
}

/** Parse bench/run.ts arguments; throws with usage text on anything unknown. */
export function parseArgs(argv: string[]): BenchArgs {
  const out: BenchArgs = {
    duration: 10,
    rounds: 3,
    scale: 10,
    only: null,
    dbwardConfig: null,
    dbwardRoot: null,
    endpoints: [...ALL_ENDPOINTS],
    connect: false,
    pin: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '--duration':
        out.duration = positiveInt(a, next());
        break;
      case '--rounds':
        out.rounds = positiveInt(a, next());
        break;
      case '--scale':
        out.scale = positiveInt(a, next());
        break;
      case '--only':
        out.only = new RegExp(next() ?? '');
        break;
      case '--dbward-config':
        out.dbwardConfig = next() ?? null;
        break;
      case '--dbward-root':
        out.dbwardRoot = next() ?? null;
        break;
      case '--pin':
        out.pin = true;
        break;
      case '--connect':
        out.connect = true;
        break;
      case '--endpoints': {
        const list = (next() ?? '').split(',').map((s) => s.trim()).filter(Boolean);
        for (const e of list) {
          if (!ALL_ENDPOINTS.includes(e as Endpoint)) throw new Error(`unknown endpoint ${e}\n${USAGE}`);
        }
        if (list.length === 0) throw new Error(`--endpoints is empty\n${USAGE}`);
        // Keep canonical order so "direct" is always measured first in a round.
        out.endpoints = ALL_ENDPOINTS.filter((e) => list.includes(e));
        break;
      }
      case '-h':
      case '--help':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return out;
}
