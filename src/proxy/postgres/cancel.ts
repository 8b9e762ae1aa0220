// Cancel keys. Each client gets dbward's own BackendKeyData (random pid and
// secret), never the upstream's; a CancelRequest is honoured only when both match,
// and is then sent upstream with the real key. Forged or stale keys do nothing.

import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

/** What a valid cancel key leads to. */
export interface CancelTarget {
  cancel(): Promise<void>;
}

/** The keys of the sessions open now. */
export class CancelRegistry {
  private readonly keys = new Map<number, { secret: Buffer; target: CancelTarget }>();

  /** Issues a fresh key for a session; returns the pid and secret to send as BackendKeyData. */
  issue(target: CancelTarget): { pid: number; secret: number } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff); while (this.keys.has(pid));
    const secret = randomBytes(4);
    this.keys.set(pid, { secret, target });
    return { pid, secret: secret.readInt32BE(0) };
  }

  /** Forgets a session's key. */
  revoke(pid: number): void {
    this.keys.delete(pid);
  }

  /** Cancels the session's running query if the key matches; returns whether it did. */
  async cancel(pid: number, secret: Buffer): Promise<boolean> {
    const entry = this.keys.get(pid);
    if (!entry || secret.length !== entry.secret.length || !timingSafeEqual(secret, entry.secret)) return false;
    await entry.target.cancel();
    return true;
  }
}
