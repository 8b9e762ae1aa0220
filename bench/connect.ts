// Connection setup cost with a verified OIDC token: how long a client waits from
// opening the socket to ReadyForQuery, direct to PostgreSQL versus through dbward
// (token verified against a real in-process issuer), measured in the same run.
//
//   npm run bench:connect -- [--count 400] [--rounds 3] [--dbward-root DIR] [--baseline-root DIR] [--no-tls]
//
// Legs run interleaved per round so machine noise hits all alike; dbward runs in its
// own process, as in production. Figures: median and p95 per leg, and the median
// overhead over direct (the figure issue 3 asks to keep at or under 2 ms).
//
// --dbward-root DIR runs dbward from DIR/dist (a saved build; DIR needs package.json,
// schemas/ and node_modules/ next to dist/). --baseline-root DIR starts a second dbward
// from a saved build and adds its plain leg to the same rounds, so a change is compared
// with the code before it under the same machine noise. --no-tls drops the TLS leg.
// --prewarm adds a leg on a second target of the same dbward with `prewarm: 2`
// (the baseline's config has no such target). --relay adds a leg through bench/relay.ts,
// a bare byte relay: what any extra Node hop costs, with no token and no protocol.

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startDevIssuer } from '../src/embedded/dev-idp.js';
import { testCertificate } from '../test/helpers/tls.js';
import { installSignalCleanup, stopAll } from './lib/children.js';
import { freePort, startDbward, startRelayProcess } from './lib/procs.js';

const root = path.resolve(import.meta.dirname, '..');
/** Pause between connections of a leg. */
const GAP_MS = 20;

interface Leg {
  name: string;
  port: number;
  user: string;
  password?: string;
  ssl: boolean;
  /** The database name the client asks for (the dbward target); default test. */
  database?: string;
}

/** Opens and closes `count` connections one after another; returns each setup time in ms. */
async function measure(leg: Leg, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const c = new pg.Client({
      host: '127.0.0.1', port: leg.port, database: leg.database ?? 'test', user: leg.user,
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
  const { values } = parseArgs({
    options: {
      'count': { type: 'string', default: '400' },
      'rounds': { type: 'string', default: '3' },
      'dbward-root': { type: 'string' },
      'baseline-root': { type: 'string' },
      'no-tls': { type: 'boolean', default: false },
      'prewarm': { type: 'boolean', default: false },
      'relay': { type: 'boolean', default: false },
    },
  });
  const count = Number(values.count);
  const rounds = Number(values.rounds);
  const dbwardRoot = path.resolve(values['dbward-root'] ?? root);
  const baselineRoot = values['baseline-root'] !== undefined ? path.resolve(values['baseline-root']) : null;
  installSignalCleanup();
  const idp = await startDevIssuer();
  const token = await idp.mintToken('alice');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-connect-'));
  const cert = testCertificate();
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(policy, 'default: allow\n');
  /** Writes a config for one dbward process (`tag` keeps their files apart); returns its path and ports. */
  const configure = async (tag: string, prewarmTarget: boolean): Promise<{ config: string; plain: number; tls: number }> => {
    const [plain, tls, admin] = [await freePort(), await freePort(), await freePort()];
    const config = path.join(dir, `dbward-${tag}.yaml`);
    writeFileSync(config, `listeners:
  - { name: plain, host: 127.0.0.1, port: ${plain}, require_tls: false, allow_plaintext_token: true }
  - { name: tls, host: 127.0.0.1, port: ${tls}, tls: { cert: ${JSON.stringify(cert.cert)}, key: ${JSON.stringify(cert.key)} } }
targets:
  - { name: test, host: 127.0.0.1, port: 5432, database: test, user: root, tls: { mode: disable } }
${prewarmTarget ? '  - { name: test_prewarm, host: 127.0.0.1, port: 5432, database: test, user: root, tls: { mode: disable }, prewarm: 2 }\n' : ''}identity: { issuer: "${idp.issuer}", audience: dbward }
policy: { path: ${JSON.stringify(policy)}, watch: false }
audit:
  file: { path: ${JSON.stringify(path.join(dir, `audit-${tag}.jsonl`))}, fsync: none }
admin: { host: 127.0.0.1, port: ${admin} }
log: { level: warn }
`);
    return { config, plain, tls };
  };
  // startDbward's readiness probe (psql) takes the token from the environment.
  process.env.PGPASSWORD = token;
  const probe = (port: number) => ({ host: '127.0.0.1', port, user: 'alice@example.com', database: 'test' });
  const primary = await configure('main', values.prewarm);
  await startDbward(dbwardRoot, primary.config, probe(primary.plain), path.join(dir, 'dbward-main.log'));
  const legs: Leg[] = [
    { name: 'direct (plain)', port: 5432, user: 'root', ssl: false },
    { name: 'dbward + token (plain)', port: primary.plain, user: 'alice@example.com', password: token, ssl: false },
  ];
  if (!values['no-tls']) legs.push({ name: 'dbward + token (TLS)', port: primary.tls, user: 'alice@example.com', password: token, ssl: true });
  if (values.prewarm) {
    legs.push({ name: 'dbward + token, prewarm 2 (plain)', port: primary.plain, user: 'alice@example.com', password: token, ssl: false, database: 'test_prewarm' });
  }
  if (values.relay) {
    // The floor of any Node hop: a bare byte relay (bench/relay.ts), no token, no protocol.
    const relay = await startRelayProcess(root, '127.0.0.1:5432', path.join(dir, 'relay.log'));
    legs.push({ name: 'bare TCP relay (plain)', port: relay.port, user: 'root', ssl: false });
  }
  if (baselineRoot !== null) {
    const base = await configure('baseline', false);
    await startDbward(baselineRoot, base.config, probe(base.plain), path.join(dir, 'dbward-baseline.log'));
    legs.push({ name: 'baseline dbward + token (plain)', port: base.plain, user: 'alice@example.com', password: token, ssl: false });
  }
  const samples = new Map<string, number[]>(legs.map((l) => [l.name, []]));
  /** Median per leg per round: how far rounds disagree says how much machine noise there was. */
  const perRound = new Map<string, number[]>(legs.map((l) => [l.name, []]));
  for (const l of legs) await measure(l, 20); // warm-up: JIT, JWKS fetch, page cache, prewarm keys
  for (let r = 0; r < rounds; r++) {
    // Rotate the starting leg so none always runs first.
    for (let i = 0; i < legs.length; i++) {
      const leg = legs[(i + r) % legs.length]!;
      const times = await measure(leg, count);
      samples.get(leg.name)!.push(...times);
      perRound.get(leg.name)!.push(quantile([...times].sort((a, b) => a - b), 0.5));
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
  console.log('\nMedian per round (ms), and each round\'s median over that round\'s direct median:\n');
  const directRounds = perRound.get(legs[0]!.name)!;
  for (const l of legs) {
    const m = perRound.get(l.name)!;
    console.log(`- ${l.name}: ${m.map((x, i) => `${x.toFixed(2)} (${(x - directRounds[i]!) >= 0 ? '+' : ''}${(x - directRounds[i]!).toFixed(2)})`).join(', ')}`);
  }
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
