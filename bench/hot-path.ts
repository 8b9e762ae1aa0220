// dbward's own CPU per statement, without the network: a session's relay and
// pipeline (analysis, policy, audit to a real file) driven in-process by fake
// sockets with pgbench -S's traffic, K sessions interleaved. No syscalls but the
// audit write, no other process competing for the cores: the figure repeats
// within a few percent, so a change to the hot path can be judged by it before
// the pgbench runs.
//
//   npm run build && npm run bench:hot -- [--audit none|file] [--sessions K] [--count N] [--rounds R]
//     [--unsealed] [--file PATH] [--root DIR (a saved build)]

import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';

interface FakeSocket extends EventEmitter {
  written: number;
}

/** The few net.Socket members the relay uses; writes are counted and dropped. */
function fakeSocket(): FakeSocket {
  const s = new EventEmitter() as FakeSocket & Record<string, unknown>;
  s.written = 0;
  Object.assign(s, {
    destroyed: false, writable: true, writableLength: 0,
    write: (b: Buffer) => { s.written += b.length; return true; },
    cork: () => {}, uncork: () => {}, pause: () => {}, resume: () => {},
    end: () => {}, destroySoon: () => {}, destroy: () => {}, setNoDelay: () => {},
  });
  return s;
}

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** The server's reply to pgbench -S's SELECT: RowDescription, DataRow, CommandComplete, ReadyForQuery. */
function selectReply(): Buffer {
  const field = Buffer.alloc(18);
  field.writeInt32BE(16395, 0); field.writeInt16BE(3, 4); field.writeInt32BE(23, 6); field.writeInt16BE(4, 10); field.writeInt32BE(-1, 12); field.writeInt16BE(0, 16);
  const rd = frame('T', Buffer.concat([Buffer.from([0, 1]), cstr('abalance'), field]));
  const value = Buffer.from('0');
  const drBody = Buffer.alloc(2 + 4 + value.length);
  drBody.writeInt16BE(1, 0); drBody.writeInt32BE(value.length, 2); value.copy(drBody, 6);
  return Buffer.concat([rd, frame('D', drBody), frame('C', cstr('SELECT 1')), frame('Z', Buffer.from('I'))]);
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string, dflt: string): string => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1]! : dflt; };
  const auditMode = arg('--audit', 'file');
  const count = Number(arg('--count', '200000'));
  const rounds = Number(arg('--rounds', '5'));
  const root = path.resolve(arg('--root', '.'));
  const dist = (p: string): Promise<Record<string, unknown>> => import(path.join(root, 'dist', p)) as Promise<Record<string, unknown>>;
  /* eslint-disable @typescript-eslint/no-explicit-any -- modules of a build chosen at run time */
  const { loadPgParser, analyzePg } = await dist('analysis/pg/analyze.js') as any;
  const { AnalysisCache } = await dist('analysis/cache.js') as any;
  const { normalizePg } = await dist('analysis/pg/normalize.js') as any;
  const { scrubSecrets } = await dist('analysis/secrets.js') as any;
  const { policyFromTexts } = await dist('policy/load.js') as any;
  const { Metrics } = await dist('admin/metrics.js') as any;
  const { FileAuditSink } = await dist('audit/file-sink.js') as any;
  const { SessionPipeline } = await dist('proxy/session.js') as any;
  const { SqlSessionState } = await dist('analysis/session-state.js') as any;
  const { PgRelay } = await dist('proxy/postgres/relay.js') as any;
  /* eslint-enable @typescript-eslint/no-explicit-any */

  await loadPgParser();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dbward-hot-'));
  const metrics = new Metrics();
  const sink = auditMode === 'none'
    ? { commit: () => {}, append: () => {}, close: async () => {}, healthy: true }
    : new FileAuditSink(arg('--file', path.join(dir, 'audit.jsonl')), { fsync: 'none', key: argv.includes('--unsealed') ? null : Buffer.alloc(32, 7) });
  const deps = {
    policy: { current: policyFromTexts([{ file: 'policy.yaml', text: 'default: allow\n' }]) },
    analysis: new AnalysisCache(analyzePg),
    audit: sink,
    texts: { normalize: normalizePg, scrub: scrubSecrets, redactLiterals: false },
    metrics,
    log: pino({ level: 'silent' }),
  };
  const target = { name: 'bench', engine: 'postgres', database: 'bench', environment: 'default', labels: {} };
  const client = { address: '127.0.0.1', port: 50000, application: 'pgbench', tls: false };
  const sessions = Number(arg('--sessions', '1'));
  const pairs: { client: FakeSocket; upstream: FakeSocket }[] = [];
  for (let k = 0; k < sessions; k++) {
    const pipeline = new SessionPipeline(deps, { user: 'root', verified: false }, target, { ...client, port: 50000 + k }, new SqlSessionState('', 'root'));
    await pipeline.start();
    const pair = { client: fakeSocket(), upstream: fakeSocket() };
    const relay = new PgRelay(pair.client as unknown as net.Socket, pair.upstream as unknown as net.Socket, pipeline,
      { metrics, log: deps.log, maxMessageBytes: 1 << 20 }, () => {});
    relay.start(Buffer.alloc(0));
    pairs.push(pair);
  }
  const reply = selectReply();
  // Distinct texts, as pgbench sends (a random aid per statement): the analysis cache's shape path, not its text hits.
  const queries = Array.from({ length: 4096 }, (_, i) => frame('Q', cstr(`SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + ((i * 7919) % 1_000_000)};`)));

  // Fresh Buffers per chunk, as a socket read gives; each session's statement, then each one's reply.
  const run = (n: number): void => {
    let q = 0;
    for (let i = 0; i < n; i += sessions) {
      for (const p of pairs) p.client.emit('data', Buffer.from(queries[q++ & 4095]!));
      for (const p of pairs) p.upstream.emit('data', Buffer.from(reply));
    }
  };
  run(20_000); // warm up the JIT and the caches
  const results: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const cpu0 = process.cpuUsage();
    run(count);
    const cpu = process.cpuUsage(cpu0);
    results.push(((cpu.user + cpu.system) * 1000) / count);
  }
  results.sort((a, b) => a - b);
  console.log(`audit ${auditMode}, ${sessions} session(s): ${results.map((x) => x.toFixed(0)).join(' ')} ns/statement (median ${results[Math.floor(rounds / 2)]!.toFixed(0)})`);
  const written = pairs.reduce((n, p) => n + p.upstream.written, 0);
  if (written < count * rounds * queries[0]!.length * 0.9) throw new Error(`only ${written} bytes reached the upstream: statements were not forwarded`);
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
