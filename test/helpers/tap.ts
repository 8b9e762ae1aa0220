// A TCP relay in front of a server that keeps every byte the server sent and counts
// the connections through it: a test can scan the raw stream for values that must
// never leave dbward, or check that dbward opened no upstream connection.

import net from 'node:net';

/** A TCP relay that keeps every byte the server sent to clients and counts connections. */
export interface Tap {
  port: number;
  received: Buffer[];
  /** Those of `values` that appear anywhere in the bytes the server sent so far. */
  seen(values: readonly string[]): string[];
  connections(): number;
  close(): Promise<void>;
}

/** Starts a tap in front of `host`:`target`. */
export async function startTap(target: number, host = '127.0.0.1'): Promise<Tap> {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    const up = net.connect(target, host);
    sockets.add(client).add(up);
    client.pipe(up);
    up.on('data', (c: Buffer) => received.push(Buffer.from(c)));
    up.pipe(client);
    const end = () => { client.destroy(); up.destroy(); };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    seen: (values) => {
      const all = Buffer.concat(received);
      return values.filter((v) => all.includes(Buffer.from(v)));
    },
    connections: () => connections,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())); },
  };
}
