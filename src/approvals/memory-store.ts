// Approval requests held in this process: for a single dbward. Requests are lost
// on restart (their audit events are not); replicas share the PostgreSQL store.

import type { ApprovalFilter, ApprovalRequest, ApprovalStatus, ApprovalStore } from './types.js';

/** Requests kept after they ended, oldest dropped first. */
const MAX_ENDED = 10_000;
const ENDED: ReadonlySet<ApprovalStatus> = new Set(['used', 'denied', 'expired', 'withdrawn']);

/** An ApprovalStore in memory; changes are atomic because they are synchronous. */
export class MemoryApprovalStore implements ApprovalStore {
  private readonly records = new Map<string, ApprovalRequest>();
  private readonly watchers = new Map<string, Set<(r: ApprovalRequest) => void>>();

  /** Stores a new request; rejects a duplicate id. */
  async create(request: ApprovalRequest): Promise<void> {
    if (this.records.has(request.id)) throw new Error(`approval request ${request.id} already exists`);
    this.records.set(request.id, structuredClone(request));
    this.prune();
  }

  /** A copy of the request, or null. */
  async get(id: string): Promise<ApprovalRequest | null> {
    const r = this.records.get(id);
    return r ? structuredClone(r) : null;
  }

  /** Requests newest first, optionally by status. */
  async list(filter: ApprovalFilter): Promise<ApprovalRequest[]> {
    const wanted = filter.status ? new Set(filter.status) : null;
    const out = [...this.records.values()].filter((r) => !wanted || wanted.has(r.status)).reverse();
    return out.slice(0, filter.limit ?? 100).map((r) => structuredClone(r));
  }

  /** Requests for this key in one of these statuses, newest first. */
  async byKey(key: string, status: ApprovalStatus[]): Promise<ApprovalRequest[]> {
    return [...this.records.values()].filter((r) => r.key === key && status.includes(r.status)).reverse().map((r) => structuredClone(r));
  }

  /** Applies `change` to the current record and tells its watchers. */
  async update(id: string, change: (current: ApprovalRequest) => ApprovalRequest | null): Promise<{ record: ApprovalRequest; changed: boolean } | null> {
    const current = this.records.get(id);
    if (!current) return null;
    const next = change(structuredClone(current));
    if (!next) return { record: structuredClone(current), changed: false };
    // Setting an existing key keeps its place: the map stays in creation order.
    this.records.set(id, structuredClone(next));
    for (const w of this.watchers.get(id) ?? []) w(structuredClone(next));
    return { record: structuredClone(next), changed: true };
  }

  /** Calls `listener` on every change of request `id`. */
  watch(id: string, listener: (record: ApprovalRequest) => void): () => void {
    let set = this.watchers.get(id);
    if (!set) this.watchers.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.watchers.delete(id);
    };
  }

  /** Nothing to release. */
  async close(): Promise<void> {}

  private prune(): void {
    if (this.records.size <= MAX_ENDED) return;
    for (const [id, r] of this.records) {
      if (this.records.size <= MAX_ENDED) break;
      if (ENDED.has(r.status)) this.records.delete(id);
    }
  }
}
