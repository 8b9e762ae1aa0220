// Self-signed certificate for `dbward dev`, so the demo listener can speak TLS
// without the user running any setup. We shell out to the openssl CLI rather
// than add a crypto dependency: Node can parse certificates but not issue them.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate, createPrivateKey } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

const CERT_FILE = 'localhost-cert.pem';
const KEY_FILE = 'localhost-key.pem';
const VALID_DAYS = 365;
const MIN_REMAINING_MS = 24 * 60 * 60 * 1000;
/** The SANs every dev certificate must carry, as X509Certificate.subjectAltName spells them. */
export const DEV_CERT_SANS = ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1'] as const;

// Our own config file, so neither the distro's openssl.cnf (which may add
// CA:TRUE or prompt for fields) nor LibreSSL-vs-OpenSSL differences matter.
const OPENSSL_CONFIG = `[req]
prompt = no
distinguished_name = dn
x509_extensions = v3
[dn]
CN = localhost
[v3]
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
`;

// P-256 first (fast to generate); RSA for openssl builds without -pkeyopt.
const KEY_ALGORITHMS: string[][] = [
  ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
  ['-newkey', 'rsa:2048'],
];

/** Returns paths of a localhost cert/key pair in `dir` (reused or made with openssl); null if openssl is missing. */
export async function createDevCertificate(dir: string): Promise<{ cert: string; key: string } | null> {
  const certPath = path.resolve(dir, CERT_FILE);
  const keyPath = path.resolve(dir, KEY_FILE);
  await fs.mkdir(path.dirname(certPath), { recursive: true, mode: 0o700 });

  if (await isReusable(certPath, keyPath)) {
    await fs.chmod(keyPath, 0o600);
    return { cert: certPath, key: keyPath };
  }

  // Generate under temporary names and rename, so a concurrent start never
  // sees a half-written pair.
  const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = { cert: certPath + suffix, key: keyPath + suffix, cnf: path.join(path.dirname(certPath), `openssl${suffix}.cnf`) };
  try {
    await fs.writeFile(tmp.cnf, OPENSSL_CONFIG, { mode: 0o600 });
    // Pre-create the key file 0600: openssl truncates it in place, so the
    // key is never readable by others, even briefly.
    await fs.writeFile(tmp.key, '', { mode: 0o600, flag: 'wx' });
    const generated = await generate(tmp);
    if (!generated) return null;
    await fs.chmod(tmp.key, 0o600);
    await fs.rename(tmp.key, keyPath);
    await fs.rename(tmp.cert, certPath);
    return { cert: certPath, key: keyPath };
  } finally {
    await Promise.all(Object.values(tmp).map((p) => fs.rm(p, { force: true })));
  }
}

async function generate(tmp: { cert: string; key: string; cnf: string }): Promise<boolean> {
  let lastError: unknown;
  for (const keyArgs of KEY_ALGORITHMS) {
    const args = ['req', '-x509', ...keyArgs, '-nodes', '-days', String(VALID_DAYS), '-config', tmp.cnf, '-keyout', tmp.key, '-out', tmp.cert];
    try {
      await run('openssl', args);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      lastError = err;
    }
  }
  throw new Error(`openssl could not create a development certificate: ${(lastError as Error).message}`);
}

function run(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 30_000, windowsHide: true }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && stderr) err.message += `\n${String(stderr).trim()}`;
      reject(err);
    });
  });
}

// Reuse only a matching pair that covers our SANs and has more than a day
// left; anything else (expired, edited, half-written) is regenerated.
async function isReusable(certPath: string, keyPath: string): Promise<boolean> {
  try {
    const [certPem, keyPem] = await Promise.all([fs.readFile(certPath), fs.readFile(keyPath)]);
    const cert = new X509Certificate(certPem);
    const now = Date.now();
    const sans = (cert.subjectAltName ?? '').split(',').map((s) => s.trim());
    return (
      Date.parse(cert.validFrom) <= now &&
      Date.parse(cert.validTo) - now > MIN_REMAINING_MS &&
      DEV_CERT_SANS.every((san) => sans.includes(san)) &&
      cert.checkPrivateKey(createPrivateKey(keyPem))
    );
  } catch {
    return false;
  }
}
