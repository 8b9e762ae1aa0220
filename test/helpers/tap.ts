// A TCP relay in front of dbward that keeps every byte dbward sent to clients, so a
// test can scan the raw stream for values that must never leave the proxy.

import net from 'node:net';

/** A TCP relay in front of dbward that keeps every byte dbward sent to clients. */
export interface Tap { port: number; received: Buffer[]; close(): Promise<void> }

/** Starts a tap in front of 127.0.0.1:`target`. */
export async function startTap(target: number): Promise<Tap> {
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(target, '127.0.0.1');
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
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())); },
  };
}
