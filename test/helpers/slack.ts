// A stand-in for Slack's incoming-webhook endpoint (Slack itself cannot be reached
// from a test): a local HTTP server that keeps every JSON body it is sent.

import http from 'node:http';
import type net from 'node:net';

/** The stand-in's URL, what it was sent, and how to stop it. */
export interface FakeSlack {
  url: string;
  bodies: any[];
  close(): Promise<void>;
}

/** Starts a stand-in webhook on a free loopback port. */
export async function fakeSlack(): Promise<FakeSlack> {
  const bodies: any[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/services/T0/B0/secret`, bodies, close: () => new Promise((r) => server.close(() => r())) };
}
