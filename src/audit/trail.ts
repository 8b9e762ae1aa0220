// Assembles the audit trail a config asks for: the primary sink (a statement is
// forwarded only once its event is there), the secondary sinks fed with the
// primary's sealed lines, and the chain head export.

import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.js';
import type { AuditConfig } from '../config/types.js';
import type { ChainHead } from './chain.js';
import type { AuditSink, SecondarySink } from './events.js';
import { FileAuditSink } from './file-sink.js';
import { HeadExporter, loadChainKey } from './head.js';
import { NatsSecondarySink } from './nats-sink.js';
import { PostgresAuditSink, PostgresSecondarySink } from './postgres-sink.js';

/** The daemon's audit trail. */
export interface AuditTrail {
  /** Where the session pipeline commits and appends events. */
  sink: AuditSink;
  secondaries: readonly SecondarySink[];
  /** Why /readyz should fail (the primary cannot be written). */
  problems(): string[];
  /** Degraded but serving (a secondary sink is behind). */
  warnings(): string[];
  /** Flushes and closes every sink, then exports the final head. */
  close(): Promise<void>;
}

/** Opens the trail; throws when the primary sink or the chain key cannot be had. */
export async function openTrail(cfg: AuditConfig, metrics: Metrics, log: Logger): Promise<AuditTrail> {
  if (cfg.primary === 'none') {
    log.warn('audit.primary is none: statements run UNRECORDED (benchmarks only)');
    return {
      sink: new NullSink(), secondaries: [],
      problems: () => [], warnings: () => ['audit.primary is none: nothing is recorded'], close: async () => undefined,
    };
  }
  const key = loadChainKey(cfg.chain.key, log);
  const secondaries = await openSecondaries(cfg, metrics, log);
  const feed = (lines: readonly string[]): void => {
    for (const s of secondaries) s.deliver(lines);
  };
  const onWritten = secondaries.length > 0 ? feed : undefined;
  let primary: FileAuditSink | PostgresAuditSink;
  try {
    primary = cfg.primary === 'postgres'
      ? await PostgresAuditSink.open(cfg.postgres!, cfg.node, key, metrics.auditObserver(), log.child({ sink: 'postgres' }), { ...(onWritten && { onWritten }) })
      : new FileAuditSink(cfg.file!.path, {
        fsync: cfg.file!.fsync, key, rotateBytes: cfg.file!.rotateBytes, rotateMs: cfg.file!.rotateMs, ...(onWritten && { onWritten }),
      }, metrics.auditObserver());
  } catch (err) {
    await Promise.all(secondaries.map((s) => s.close(0)));
    throw err;
  }
  const head = (): ChainHead => primary.head;
  const exporter = cfg.chain.headFile ? new HeadExporter(cfg.chain.headFile, cfg.node, head, cfg.chain.headIntervalMs, log) : null;
  return {
    sink: primary,
    secondaries,
    problems: () => (primary.healthy ? [] : ['audit sink cannot be written: statements are refused']),
    warnings: () => secondaries.filter((s) => !s.healthy).map((s) => `audit sink ${s.name} is not accepting events (queued, retrying)`),
    async close() {
      try {
        await primary.close();
      } finally {
        await Promise.all(secondaries.map((s) => s.close(5000)));
        exporter?.stop();
      }
    },
  };
}

/** The secondary sinks; an unreachable server is retried in the background, a misconfigured one throws. */
async function openSecondaries(cfg: AuditConfig, metrics: Metrics, log: Logger): Promise<SecondarySink[]> {
  const secondaries: SecondarySink[] = [];
  try {
    if (cfg.postgres && cfg.primary !== 'postgres') {
      secondaries.push(await PostgresSecondarySink.create(cfg.postgres, cfg.node, metrics.sinkObserver('postgres'), log.child({ sink: 'postgres' })));
    }
    if (cfg.nats) {
      secondaries.push(await NatsSecondarySink.create(cfg.nats, cfg.node, metrics.sinkObserver('nats'), log.child({ sink: 'nats' })));
    }
  } catch (err) {
    await Promise.all(secondaries.map((s) => s.close(0)));
    throw err;
  }
  return secondaries;
}

/** audit.primary none: accepts and forgets every line. */
class NullSink implements AuditSink {
  readonly healthy = true;
  commit(): void {}
  append(): void {}
  async close(): Promise<void> {}
}
