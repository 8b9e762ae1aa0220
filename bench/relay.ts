// The benchmark floor: a bare Node TCP relay with no protocol awareness.
// Whatever dbward costs above this is dbward's own work; whatever this costs
// above a direct connection is the price of any Node-based hop.
import net from 'node:net';
import { pathToFileURL } from 'node:url';

export interface RelayOptions {
  listenPort?: number;
  upstreamHost: string;
  upstreamPort: number;
}

export interface Relay {
  port: number;
  close(): Promise<void>;
}

/** Start a TCP relay on 127.0.0.1 that pipes every client to the upstream address. */
export function startRelay(opts: RelayOptions): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };

  const server = net.createServer((client) => {
    track(client);
    client.setNoDelay(true);
    const upstream = net.connect({ host: opts.upstreamHost, port: opts.upstreamPort });
    track(upstream);
    upstream.setNoDelay(true);
    // Errors on either side just tear down the pair; pipe() alone would leave
    // the peer half-open and an unhandled 'error' would crash the relay.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, '127.0.0.1', () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        reject(new Error('relay: unexpected listen address'));
        return;
      }
      resolve({
        port: addr.port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

function parseUpstream(spec: string): { host: string; port: number } {
  const i = spec.lastIndexOf(':');
  const port = Number(spec.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port)) throw new Error(`bad --upstream ${spec} (want host:port)`);
  return { host: spec.slice(0, i), port };
}

async function main(argv: string[]): Promise<void> {
  let upstream = '127.0.0.1:5432';
  let port = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--upstream') upstream = argv[++i] ?? '';
    else if (a === '--port') port = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  const up = parseUpstream(upstream);
  const relay = await startRelay({ listenPort: port, upstreamHost: up.host, upstreamPort: up.port });
  console.log(relay.port);
  const stop = (): void => void relay.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
