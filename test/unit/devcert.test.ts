// The dev certificate must be usable as-is: parseable, right SANs, private key
// locked down, and trusted by a TLS client that pins it as its CA.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDevCertificate, DEV_CERT_SANS } from '../../src/embedded/devcert.js';

let dir: string;
const servers: tls.Server[] = [];
const originalPath = process.env.PATH;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'dbward-devcert-'));
});

afterEach(async () => {
  process.env.PATH = originalPath;
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await rm(dir, { recursive: true, force: true });
});

describe('createDevCertificate', () => {
  it('writes a localhost certificate with the expected SANs and a 0600 key', async () => {
    const paths = await createDevCertificate(path.join(dir, 'tls'));
    expect(paths).not.toBeNull();
    const cert = new X509Certificate(await readFile(paths!.cert));
    expect(cert.subject).toBe('CN=localhost');
    const sans = cert.subjectAltName!.split(',').map((s) => s.trim());
    for (const san of DEV_CERT_SANS) expect(sans).toContain(san);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('::1')).toBe('::1');
    const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(363);
    expect(days).toBeLessThan(367);
    expect(cert.verify(cert.publicKey)).toBe(true); // self-signed
    if (process.platform !== 'win32') expect((await stat(paths!.key)).mode & 0o777).toBe(0o600);
  });

  it('is accepted by a TLS client that trusts it as its CA', async () => {
    const paths = (await createDevCertificate(dir))!;
    const [cert, key] = await Promise.all([readFile(paths.cert), readFile(paths.key)]);
    const server = tls.createServer({ cert, key }, (s) => s.end('hello over tls'));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };

    for (const host of ['127.0.0.1', 'localhost']) {
      const text = await new Promise<string>((resolve, reject) => {
        // No rejectUnauthorized:false: hostname and chain are fully verified.
        const sock = tls.connect({ host: '127.0.0.1', port, servername: host === 'localhost' ? host : undefined, ca: cert, checkServerIdentity: (_h, c) => tls.checkServerIdentity(host, c) });
        let data = '';
        sock.on('data', (d: Buffer) => (data += d.toString()));
        sock.on('end', () => resolve(data));
        sock.on('error', reject);
      });
      expect(text).toBe('hello over tls');
    }
  });

  it('reuses valid files and replaces a pair that no longer matches', async () => {
    const first = (await createDevCertificate(dir))!;
    const pem = await readFile(first.cert, 'utf8');
    const again = (await createDevCertificate(dir))!;
    expect(again).toEqual(first);
    expect(await readFile(again.cert, 'utf8')).toBe(pem);

    await writeFile(first.cert, 'not a certificate');
    const regenerated = (await createDevCertificate(dir))!;
    const fresh = await readFile(regenerated.cert, 'utf8');
    expect(fresh).not.toBe(pem);
    expect(() => new X509Certificate(fresh)).not.toThrow();
  });

  it('returns null when openssl is not on PATH', async () => {
    process.env.PATH = path.join(dir, 'empty-bin');
    await expect(createDevCertificate(path.join(dir, 'tls'))).resolves.toBeNull();
    expect(await readdir(path.join(dir, 'tls'))).toEqual([]); // temp files cleaned up
  });
});
