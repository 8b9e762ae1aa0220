// The approvals service: makes requests for held statements, waits for them,
// takes decisions, lets statements through on grants, expires what is due, and
// records every step in the audit trail (requests, decisions and uses are
// committed before anything depends on them; notifications are appended).

import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { eventBase, type ApprovalEvent, type AuditSink } from '../audit/events.js';
import { eventLine } from '../audit/serialize.js';
import type { Identity, SessionIdentity } from '../identity/types.js';
import type { ApprovalTerms } from '../policy/decide.js';
import type { TargetInfo } from '../proxy/session.js';
import { signLink } from './links.js';
import type { Notifier } from './notify.js';
import { ApprovalRefused, decide, expire, use, withdraw } from './rules.js';
import type { ApprovalRequest, ApprovalStatus, ApprovalStore, DecisionChannel } from './types.js';

const ID_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/** What a held statement brings to its request. */
export interface HeldStatement {
  identity: SessionIdentity;
  session: string;
  target: TargetInfo;
  /** The text as the audit trail records it. */
  text: string;
  /** Extended protocol: the bound values, for approvers to read (see ApprovalRequest.params). */
  params?: (string | null)[];
  fingerprint: string | null;
  rules: string[];
  terms: ApprovalTerms;
}

export interface ApprovalServiceOptions {
  store: ApprovalStore;
  audit: AuditSink;
  notifiers: Notifier[];
  replica: string;
  /** Signs approve/deny links into notifications (the base URL is known once the admin server listens); null: no links. */
  links: { key: Buffer; baseUrl: () => string | null } | null;
  log: Logger;
  /** How often due requests are expired; 0: never (tests drive expiry). */
  sweepMs: number;
  /** Told of every step recorded (requested, decided, used, ...): the metrics. */
  onStep?: (step: ApprovalEvent['step']) => void;
}

/** Approval requests for one dbward (and, through a shared store, its replicas). */
export class ApprovalService {
  private readonly sweeper: NodeJS.Timeout | null;
  private closed = false;

  constructor(private readonly opts: ApprovalServiceOptions) {
    this.sweeper = opts.sweepMs > 0 ? setInterval(() => void this.sweep(), opts.sweepMs) : null;
    this.sweeper?.unref();
  }

  /** The store, for the admin API's reads. */
  get store(): ApprovalStore {
    return this.opts.store;
  }

  /**
   * Which later statements a grant lets through: the same identity, target, statement
   * text as sent (not as recorded: the trail may redact literals) and, in the extended
   * protocol, the same bound parameters (`params`: format codes and values as sent).
   */
  static key(identity: SessionIdentity, target: TargetInfo, text: string, params: Buffer | null = null): string {
    const who = identity.verified ? `${identity.issuer}\0${identity.subject}` : `unverified\0${identity.user}`;
    const h = createHash('sha256').update(`${who}\0${target.name}\0${text}`);
    if (params) h.update('\0params\0').update(params);
    return h.digest('hex');
  }

  /** Records a new request (committed) and notifies approvers in the background. */
  async request(held: HeldStatement, key: string): Promise<ApprovalRequest> {
    const now = new Date();
    const id = held.identity;
    const r: ApprovalRequest = {
      id: newId(), status: 'pending', key, createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + held.terms.timeoutSec * 1000).toISOString(),
      requester: {
        user: id.user, subject: id.verified ? id.subject : null, groups: id.verified ? id.groups : [],
        kind: id.verified ? id.kind : null, verified: id.verified,
      },
      session: held.session, replica: this.opts.replica,
      target: { name: held.target.name, environment: held.target.environment, database: held.target.database },
      text: held.text, ...(held.params && { params: held.params }), fingerprint: held.fingerprint, rules: held.rules,
      approvers: held.terms.approvers, required: held.terms.required, mode: held.terms.mode, grant: held.terms.grant,
      ttlSec: held.terms.ttlSec, decisions: [], grantExpiresAt: null, uses: 0, reason: null, updatedAt: now.toISOString(),
    };
    await this.opts.store.create(r);
    await this.opts.audit.commit(this.line(r, 'requested', { text: true }));
    this.notify('requested', r);
    return r;
  }

  /** Lets one statement through on a grant for `key`, if there is one; records the use (committed). */
  async useGrant(key: string, statementId: string): Promise<ApprovalRequest | null> {
    for (const candidate of await this.opts.store.byKey(key, ['approved'])) {
      const r = await this.useOne(candidate.id, statementId);
      if (r) return r;
    }
    return null;
  }

  /** Uses request `id`'s grant for one statement; null when it cannot be used (expired, used up). */
  async useOne(id: string, statementId: string): Promise<ApprovalRequest | null> {
    const now = new Date();
    const res = await this.opts.store.update(id, (r) => use(r, now));
    if (!res?.changed) return null;
    await this.opts.audit.commit(this.line(res.record, 'used', { statement_id: statementId }));
    return res.record;
  }

  /**
   * Resolves with the request once it is no longer pending: approved, denied,
   * expired (its deadline passed) or withdrawn (`signal` aborted: Ctrl-C, or
   * the session ended).
   */
  wait(id: string, signal: AbortSignal): Promise<ApprovalRequest> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      let done = false;
      // The first outcome wins; the watcher, the deadline and the abort listener go with it.
      const end = (settle: () => void): void => {
        if (done) return;
        done = true;
        unwatch();
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        settle();
      };
      const finish = (r: ApprovalRequest): void => end(() => resolve(r));
      const fail = (err: unknown): void => end(() => reject(err as Error));
      const settle = (r: ApprovalRequest | null): void => {
        if (!r) return fail(new Error(`approval request ${id} is gone from the store`));
        if (r.status !== 'pending') return finish(r);
        // Armed from the record, so a deadline set by another replica holds here too.
        timer ??= setTimeout(() => this.expireNow(id).then(settle, fail), Math.max(0, Date.parse(r.expiresAt) - Date.now()));
      };
      const onAbort = (): void => {
        this.withdraw(id, String(signal.reason ?? 'withdrawn')).then(settle, fail);
      };
      const unwatch = this.opts.store.watch(id, (r) => { if (r.status !== 'pending') finish(r); });
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) return onAbort();
      this.opts.store.get(id).then(settle, fail);
    });
  }

  /** One approver's answer; throws ApprovalRefused when it is not theirs to give. Records it (committed). */
  async decide(id: string, approver: Identity, decision: 'approve' | 'deny', reason: string | null, via: DecisionChannel): Promise<ApprovalRequest> {
    const now = new Date();
    const res = await this.opts.store.update(id, (r) => decide(r, approver, decision, reason, via, now));
    if (!res) throw new ApprovalRefused(404, `no approval request ${id}`);
    const r = res.record;
    const step = r.status === 'approved' ? 'approved' : r.status === 'denied' ? 'denied' : 'decided';
    await this.opts.audit.commit(this.line(r, step, {
      actor: { user: approver.user, subject: approver.subject, groups: approver.groups, via }, reason,
    }));
    if (step !== 'decided') this.notify('decided', r);
    return r;
  }

  /** Adds a notifier once running (`dbward dev` prints links to its terminal). */
  addNotifier(n: Notifier): void {
    this.opts.notifiers.push(n);
  }

  /** Withdraws a pending request (recorded); returns the request as it is now. */
  async withdraw(id: string, why: string): Promise<ApprovalRequest | null> {
    const now = new Date();
    const res = await this.opts.store.update(id, (r) => withdraw(r, why, now));
    if (res?.changed) {
      this.append(this.line(res.record, 'withdrawn', { reason: why }));
      this.notify('decided', res.record);
    }
    return res?.record ?? null;
  }

  /** Expires request `id` if it is due (recorded); returns it as it is now. */
  async expireNow(id: string): Promise<ApprovalRequest | null> {
    const now = new Date();
    const res = await this.opts.store.update(id, (r) => expire(r, now));
    if (res?.changed) {
      this.append(this.line(res.record, 'expired', { reason: res.record.reason }));
      // Approvers hear that a request lapsed; a grant's window ending is no news to them.
      if (res.record.grantExpiresAt === null) this.notify('decided', res.record);
    }
    return res?.record ?? null;
  }

  /** Requests, newest first. */
  list(status?: ApprovalStatus[], limit?: number): Promise<ApprovalRequest[]> {
    return this.opts.store.list({ ...(status && { status }), ...(limit !== undefined && { limit }) });
  }

  /** Stops the sweeper and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await this.opts.store.close();
  }

  /** Expires every request that is due; each replica may sweep, the store lets one win. */
  async sweep(): Promise<void> {
    try {
      const open = await this.opts.store.list({ status: ['pending', 'approved'], limit: 10_000 });
      const now = Date.now();
      for (const r of open) {
        const due = r.status === 'pending' ? Date.parse(r.expiresAt) : r.grantExpiresAt ? Date.parse(r.grantExpiresAt) : Infinity;
        if (due <= now) await this.expireNow(r.id);
      }
    } catch (err) {
      this.opts.log.warn({ err }, 'approval sweep failed');
    }
  }

  private notify(kind: 'requested' | 'decided', r: ApprovalRequest): void {
    const links = this.links(r);
    for (const n of this.opts.notifiers) {
      n.send({ kind, request: r, links }).then(
        () => this.append(this.line(r, 'notified', { notifier: n.name })),
        (err: Error) => {
          this.opts.log.warn({ err, notifier: n.name, request: r.id }, 'approval notification failed');
          this.append(this.line(r, 'notify_failed', { notifier: n.name, error: err.message }));
        },
      );
    }
  }

  /** Signed approve/deny links valid while the request is open; null without a link key or once it ended. */
  links(r: ApprovalRequest): { approve: string; deny: string } | null {
    const l = this.opts.links;
    const base = l?.baseUrl();
    if (!l || !base || r.status !== 'pending') return null;
    const exp = Math.floor(Date.parse(r.expiresAt) / 1000);
    return { approve: signLink(l.key, base, r.id, 'approve', exp), deny: signLink(l.key, base, r.id, 'deny', exp) };
  }

  private line(r: ApprovalRequest, step: ApprovalEvent['step'], extra: Partial<ApprovalEvent> & { text?: boolean }): string {
    const { text, ...rest } = extra;
    this.opts.onStep?.(step);
    const event: ApprovalEvent = {
      ...eventBase(r.session), type: 'approval', step,
      request: {
        id: r.id, status: r.status, requester: r.requester.user, target: r.target.name, rules: r.rules, approvers: r.approvers,
        required: r.required, mode: r.mode, grant: r.grant, fingerprint: r.fingerprint, ...(text && { text: r.text }),
        expires_at: r.expiresAt, grant_expires_at: r.grantExpiresAt, uses: r.uses,
      },
      ...rest,
    };
    return eventLine(event);
  }

  private append(line: string): void {
    try {
      this.opts.audit.append(line);
    } catch (err) {
      this.opts.log.error({ err }, 'could not append an approval event');
    }
  }
}

/** apr_ and ten characters without look-alikes (0/o, 1/l/i): easy to read aloud and type. */
function newId(): string {
  const bytes = randomBytes(10);
  let s = 'apr_';
  for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
  return s;
}
