// The NATS JetStream audit sink against a real NATS server: subjects by event
// type, byte-exact order, deduplication by message id, and the bounded queue
// while the server is away (a loopback forwarder stands between the sink and
// NATS so the server can "go away" and come back on cue).

import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Chain, unseal } from '../../src/audit/chain.js';
import { isoMicros, type SinkObserver } from '../../src/audit/events.js';
import { eventType, NatsSecondarySink } from '../../src/audit/nats-sink.js';
import type { NatsAuditConfig } from '../../src/config/types.js';
import { requireService } from '../helpers/services.js';

const NATS = { host: '127.0.0.1', port: 4222 } as const;
const key = Buffer.from('an audit chain key of at least thirty-two bytes');
const log = pino({ level: 'silent' });
const suffix = randomBytes(4).toString('hex');
const streams: string[] = [];
const closers: (() => Promise<unknown>)[] = [];
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  await requireService('NATS (JetStream)', NATS.host, NATS.port);
  nc = await connect({ servers: `${NATS.host}:${NATS.port}` });
  jsm = await nc.jetstreamManager();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc?.close();
});

let streamNo = 0;
function config(over: Partial<NatsAuditConfig> = {}): NatsAuditConfig {
  const n = streamNo++;
  const stream = `DBWARD_T_${suffix}_${n}`;
  streams.push(stream);
  return { servers: [`nats://${NATS.host}:${NATS.port}`], stream, subject: `dbward.t${suffix}.n${n}`, credentials: null, maxQueue: 1000, ...over };
}

interface Recorded extends SinkObserver {
  delivered: number;
  droppedLines: number;
  failures: number;
}
function recorder(): Recorded {
  const r: Recorded = {
    delivered: 0, droppedLines: 0, failures: 0,
    written: (n) => { r.delivered += n; },
    dropped: (n) => { r.droppedLines += n; },
    failed: () => { r.failures++; },
  };
  return r;
}

async function open(cfg: NatsAuditConfig, obs: SinkObserver = {}): Promise<NatsSecondarySink> {
  const sink = await NatsSecondarySink.create(cfg, 'node-n', obs, log, { retryMaxMs: 200, connectTimeoutMs: 1000, ackTimeoutMs: 2000 });
  closers.push(() => sink.close(1000));
  return sink;
}

function sealedLines(chain: Chain, n: number, type?: string): string[] {
  const types = ['session_start', 'statement', 'statement_outcome'];
  return Array.from({ length: n }, (_, i) => chain.seal(JSON.stringify({
    v: 1, id: randomUUID(), time: isoMicros(), session: 'sess-1', type: type ?? types[i % 3], text: `SELECT 'é ✓ \u0000 ${i}'`,
  })));
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stored(stream: string): Promise<{ subject: string; data: Buffer; id: string }[]> {
  const info = await jsm.streams.info(stream);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    out.push({ subject: m.subject, data: Buffer.from(m.data), id: m.header.get('Nats-Msg-Id') });
  }
  return out;
}

/** A loopback TCP forwarder to NATS that can be stopped (connections cut, port closed) and started again on the same port. */
async function forwarder(): Promise<{ url: string; start(): Promise<void>; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(NATS);
    sockets.add(client).add(upstream);
    const drop = (): void => { client.destroy(); upstream.destroy(); };
    client.pipe(upstream).on('error', drop);
    upstream.pipe(client).on('error', drop);
    client.on('close', drop).on('error', drop);
    upstream.on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const f = {
    url: `nats://127.0.0.1:${port}`,
    start: () => new Promise<void>((r, j) => { server.once('error', j); server.listen(port, '127.0.0.1', () => { server.off('error', j); r(); }); }),
    stop: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (server.listening) server.close(() => r());
      else r();
    }),
  };
  closers.push(() => f.stop());
  return f;
}

describe('NatsSecondarySink', () => {
  it('publishes each line to <subject>.<type>, in order, byte for byte, with <node>.<seq> as message id', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await open(cfg, obs);
    expect(sink.healthy).toBe(true);
    const info = await jsm.streams.info(cfg.stream);
    expect(info.config.subjects).toEqual([`${cfg.subject}.>`]);
    const lines = sealedLines(new Chain(key), 30);
    sink.deliver(lines.slice(0, 10));
    sink.deliver(lines.slice(10));
    await until('30 lines', () => obs.delivered === 30);
    const got = await stored(cfg.stream);
    expect(got.map((m) => m.data)).toEqual(lines.map((l) => Buffer.from(l, 'utf8')));
    expect(got.map((m) => m.subject)).toEqual(lines.map((l) => `${cfg.subject}.${JSON.parse(l).type}`));
    expect(got.map((m) => m.id)).toEqual(lines.map((l) => `node-n.${unseal(l)!.seq}`));
  });

  it('is deduplicated by JetStream when lines are delivered again', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await open(cfg, obs);
    const chain = new Chain(key);
    const lines = sealedLines(chain, 20);
    sink.deliver(lines);
    await until('20 lines', () => obs.delivered === 20);
    const more = sealedLines(chain, 3);
    sink.deliver(lines.slice(5, 15).concat(more));
    await until('the redelivery', () => obs.delivered === 33);
    expect((await stored(cfg.stream)).map((m) => m.data.toString('utf8'))).toEqual(lines.concat(more));
  });

  it('delivers what is queued when closed', async () => {
    const cfg = config();
    const sink = await open(cfg);
    const lines = sealedLines(new Chain(key), 50);
    sink.deliver(lines);
    await sink.close(5000);
    expect((await stored(cfg.stream)).length).toBe(50);
  });

  it('starts without its server: unhealthy, queueing, dropping the oldest past max_queue, then delivering the newest', async () => {
    const f = await forwarder();
    await f.stop();
    const cfg = config({ servers: [f.url], maxQueue: 10 });
    const obs = recorder();
    const sink = await open(cfg, obs);
    expect(sink.healthy).toBe(false);
    const lines = sealedLines(new Chain(key), 25);
    expect(() => sink.deliver(lines.slice(0, 5))).not.toThrow();
    await until('a failed retry', () => obs.failures >= 2);
    expect(() => sink.deliver(lines.slice(5))).not.toThrow();
    await until('15 dropped', () => obs.droppedLines === 15);
    expect(sink.healthy).toBe(false);
    await f.start();
    await until('recovery', () => sink.healthy && obs.delivered === 10);
    expect((await stored(cfg.stream)).map((m) => m.data.toString('utf8'))).toEqual(lines.slice(15));
  });

  it('queues while the connection is down and delivers everything once it reconnects', async () => {
    const f = await forwarder();
    const cfg = config({ servers: [f.url] });
    const obs = recorder();
    const sink = await open(cfg, obs);
    const lines = sealedLines(new Chain(key), 20);
    sink.deliver(lines.slice(0, 5));
    await until('5 lines', () => obs.delivered === 5);
    await f.stop();
    await until('the disconnect', () => !sink.healthy);
    expect(() => sink.deliver(lines.slice(5))).not.toThrow();
    await new Promise((r) => setTimeout(r, 300));
    expect(obs.delivered).toBe(5);
    await f.start();
    await until('reconnect and delivery', () => sink.healthy && obs.delivered === 20);
    expect((await stored(cfg.stream)).map((m) => m.data.toString('utf8'))).toEqual(lines);
    expect(obs.droppedLines).toBe(0);
  });
});

describe('eventType', () => {
  it('reads the type cheaply, and safely for anything else', () => {
    expect(eventType('{"v":1,"id":"x","time":"t","session":"s","type":"statement","identity":{"type":"nested"}}')).toBe('statement');
    expect(eventType('{"v":1,"identity":{"type":"nested"},"type":"session_end"}')).toBe('session_end');
    expect(eventType('{"v":1,"session":"a\\",\\"type\\":\\"evil","type":"statement"}')).toBe('statement');
    expect(eventType('{"v":1,"type":"a.b>"}')).toBe('unknown');
    expect(eventType('not json')).toBe('unknown');
  });
});
