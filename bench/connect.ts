// Connection setup cost with a verified OIDC token: how long a client waits from
// opening the socket to ReadyForQuery, direct to PostgreSQL versus through dbward
// (token verified against a real in-process issuer), measured in the same run.
//
//   npm run bench:connect -- [--count 400] [--rounds 3]
//
// Legs run interleaved per round so machine noise hits all alike; dbward runs in its
// own process, as in production. Figures: median and p95 per leg, and the median
// overhead over direct (the figure issue 3 asks to keep at or under 2 ms).

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startDevIssuer } from '../src/embedded/dev-idp.js';
import { testCertificate } from '../test/helpers/tls.js';
import { installSignalCleanup, stopAll } from './lib/children.js';
import { freePort, startDbward } from './lib/procs.js';

const root = path.resolve(import.meta.dirname, '..');
/** Pause between connections of a leg. */
const GAP_MS = 20;

interface Leg {
  name: string;
  port: number;
  user: string;
  password?: string;
  ssl: boolean;
}

/** Opens and closes `count` connections one after another; returns each setup time in ms. */
async function measure(leg: Leg, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const c = new pg.Client({
      host: '127.0.0.1', port: leg.port, database: 'test', user: leg.user,
      ...(leg.password !== undefined && { password: leg.password }),
      ssl: leg.ssl ? { rejectUnauthorized: false } : false,
    });
    const t0 = process.hrtime.bigint();
    await c.connect();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await c.end();
    // Let the backend exit before the next connection: otherwise each setup races the
    // previous session's teardown, which the proxied leg (one more hop) loses by several ms.
    await new Promise((r) => setTimeout(r, GAP_MS));
  }
  return times;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '400' }, rounds: { type: 'string', default: '3' } } });
  const count = Number(values.count);
  const rounds = Number(values.rounds);
  installSignalCleanup();
  const idp = await startDevIssuer();
  const token = await idp.mintToken('alice');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-connect-'));
  const cert = testCertificate();
  const [plain, tls, admin] = [await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, 'dbward.yaml');
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(policy, 'default: allow\n');
  writeFileSync(config, `listeners:
  - { name: plain, host: 127.0.0.1, port: ${plain}, require_tls: false, allow_plaintext_token: true }
  - { name: tls, host: 127.0.0.1, port: ${tls}, tls: { cert: ${JSON.stringify(cert.cert)}, key: ${JSON.stringify(cert.key)} } }
targets:
  - { name: test, host: 127.0.0.1, port: 5432, database: test, user: root, tls: { mode: disable } }
identity: { issuer: "${idp.issuer}", audience: dbward }
policy: { path: ${JSON.stringify(policy)}, watch: false }
audit:
  file: { path: ${JSON.stringify(path.join(dir, 'audit.jsonl'))}, fsync: none }
admin: { host: 127.0.0.1, port: ${admin} }
log: { level: warn }
`);
  // startDbward's readiness probe (psql) takes the token from the environment.
  process.env.PGPASSWORD = token;
  await startDbward(root, config, { host: '127.0.0.1', port: plain, user: 'alice@example.com', database: 'test' }, path.join(dir, 'dbward.log'));
  const legs: Leg[] = [
    { name: 'direct (plain)', port: 5432, user: 'root', ssl: false },
    { name: 'dbward + token (plain)', port: plain, user: 'alice@example.com', password: token, ssl: false },
    { name: 'dbward + token (TLS)', port: tls, user: 'alice@example.com', password: token, ssl: true },
  ];
  const samples = new Map<string, number[]>(legs.map((l) => [l.name, []]));
  for (const l of legs) await measure(l, 20); // warm-up: JIT, JWKS fetch, page cache
  for (let r = 0; r < rounds; r++) {
    // Rotate the starting leg so none always runs first.
    for (let i = 0; i < legs.length; i++) {
      const leg = legs[(i + r) % legs.length]!;
      samples.get(leg.name)!.push(...await measure(leg, count));
    }
  }
  await stopAll();
  await idp.close();
  const direct = [...samples.get(legs[0]!.name)!].sort((a, b) => a - b);
  const directMedian = quantile(direct, 0.5);
  console.log(`\nConnection setup, ${rounds} rounds x ${count} sequential connections per leg (node-postgres, socket open to ReadyForQuery)\n`);
  console.log('| leg | median ms | p95 ms | median over direct ms |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const l of legs) {
    const s = [...samples.get(l.name)!].sort((a, b) => a - b);
    const med = quantile(s, 0.5);
    console.log(`| ${l.name} | ${med.toFixed(3)} | ${quantile(s, 0.95).toFixed(3)} | ${(med - directMedian).toFixed(3)} |`);
  }
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
