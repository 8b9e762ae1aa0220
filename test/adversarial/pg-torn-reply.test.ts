// A server that dies in the middle of a message: what reached the client is the
// server's bytes and nothing more. An error dbward wrote after half a DataRow would
// be read by the client as the rest of that row, never as an error.

import net from 'node:net';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pgTarget, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg } from '../helpers/rawpg.js';
import { requirePostgres } from '../helpers/services.js';

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** RowDescription of one text column named `name`. */
function rowDescription(name: string): Buffer {
  const b = Buffer.alloc(2 + name.length + 1 + 18);
  b.writeInt16BE(1, 0);
  b.write(name, 2);
  b.writeInt32BE(25, 2 + name.length + 1 + 6);
  b.writeInt16BE(-1, 2 + name.length + 1 + 10);
  b.writeInt32BE(-1, 2 + name.length + 1 + 12);
  return frame('T', b);
}

function dataRow(value: string): Buffer {
  const b = Buffer.alloc(6);
  b.writeInt16BE(1, 0);
  b.writeInt32BE(Buffer.byteLength(value), 2);
  return frame('D', Buffer.concat([b, Buffer.from(value)]));
}

const SETTINGS = Buffer.concat([rowDescription('search_path'), dataRow('"$user", public'), frame('C', Buffer.from('SHOW\0')), frame('Z', Buffer.from('I'))]);
const TORN = Buffer.concat([rowDescription('v'), dataRow('x'.repeat(5000)).subarray(0, 300)]);

let fake: net.Server;
let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  // Logs in, answers dbward's settings probe, then dies halfway through the first row of a query.
  fake = net.createServer((s) => {
    s.on('error', () => undefined);
    let step = 0;
    s.on('data', () => {
      if (step === 0) s.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0, 0x5a, 0, 0, 0, 5, 0x49]));
      else if (step === 1) s.write(SETTINGS);
      else s.end(TORN, () => s.destroy());
      step++;
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
  d = await startTestDaemon({ targets: [pgTarget(), pgTarget({ name: 'torn', port: (fake.address() as net.AddressInfo).port })] });
});

afterAll(async () => {
  await d?.stop();
  fake?.close();
});

it('passes on a torn reply as it came and closes, with no error written inside the torn message', async () => {
  const c = await RawPg.login(d.port, 'alice', 'torn');
  const after: Buffer[] = [];
  c.socket.on('data', (b: Buffer) => after.push(b));
  c.send(serialize.query('SELECT v'));
  expect(await c.closedWithin(5000)).toBe(true);
  expect(Buffer.concat(after).equals(TORN)).toBe(true);
  // Other sessions go on.
  const ok = await RawPg.login(d.port, 'alice', 'test');
  ok.send(serialize.query('SELECT 1'));
  expect((await ok.until('readyForQuery')).some((m) => m.name === 'dataRow')).toBe(true);
  ok.end();
});
