// The policy in force, and its replacement when the files change or on SIGHUP.
// A new policy that does not load leaves the old one in force: a typo in a YAML
// file must never open (or close) the gates on its own.

import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.js';
import type { PolicyReloadEvent } from '../audit/events.js';
import { loadPolicy, type LoadedPolicy } from './load.js';

/** A load or reload, as the audit trail records it (the event without its envelope). */
export type PolicyLoad = Omit<PolicyReloadEvent, 'v' | 'id' | 'time' | 'session' | 'type'>;

/** Quiet time after the last file event before reloading (editors write in several steps). */
const SETTLE_MS = 150;

/** Holds the current policy engine for every session; sessions read `current` per statement. */
export class PolicyHolder {
  current: LoadedPolicy;
  /** Told of every reload (the daemon records it in the audit trail). */
  onLoad: ((load: PolicyLoad) => void) | null = null;
  /** Why the last reload failed, while the old policy stays in force; null after a good load. */
  problem: string | null = null;
  private watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** Loads the policy; throws PolicyError when it is invalid (dbward then does not start). */
  constructor(private readonly paths: string[], private readonly log: Logger, private readonly metrics: Metrics) {
    const loaded = loadPolicy(paths);
    this.current = loaded;
    metrics.policyRules.set(loaded.ruleCount);
    log.info({ paths, rules: loaded.ruleCount }, 'policy loaded');
  }

  /** Loads the files again; on failure keeps the current policy and records why. Returns whether the new policy is in force. */
  reload(reason: 'watch' | 'SIGHUP'): boolean {
    try {
      const loaded = loadPolicy(this.paths);
      this.current = loaded;
      this.problem = null;
      this.metrics.policyReloads.inc({ result: 'ok' });
      this.metrics.policyRules.set(loaded.ruleCount);
      this.log.info({ reason, rules: loaded.ruleCount }, 'policy reloaded');
      this.onLoad?.({ trigger: reason, ...this.describe('applied') });
      return true;
    } catch (err) {
      this.problem = (err as Error).message;
      this.metrics.policyReloads.inc({ result: 'invalid' });
      this.log.error({ reason, problems: this.problem }, 'new policy is invalid; the previous policy stays in force');
      // The files that were read, not the policy still in force: no digest of the previous one.
      this.onLoad?.({ trigger: reason, result: 'invalid', rules: this.current.ruleCount, files: this.paths, error: this.problem.slice(0, 2000) });
      return false;
    }
  }

  /** The policy in force, as a PolicyLoad records it. */
  describe(result: PolicyLoad['result']): Omit<PolicyLoad, 'trigger'> {
    const { files, digest } = this.current.origin;
    return { result, rules: this.current.ruleCount, files, digest };
  }

  /** Reloads whenever a policy file or directory changes. */
  watch(): void {
    for (const p of this.paths) {
      try {
        const w = fs.watch(p, () => this.schedule());
        w.on('error', (err) => this.log.warn({ err, path: p }, 'policy watch failed; SIGHUP still reloads'));
        this.watchers.push(w);
      } catch (err) {
        this.log.warn({ err, path: p }, 'cannot watch policy path; SIGHUP still reloads');
      }
    }
  }

  /** Stops watching. */
  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.reload('watch'), SETTLE_MS);
    this.timer.unref();
  }
}
