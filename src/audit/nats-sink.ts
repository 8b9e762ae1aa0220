// NATS JetStream as a secondary audit sink, for SIEM pipelines. Each sealed
// line is published to `<subject>.<event type>` with the message id
// `<node>.<seq>`, so JetStream drops the copies a retry sends (within the
// stream's duplicate window). Publishes are pipelined, at most WINDOW awaiting
// their acks; a line whose ack failed is retried with everything after it, so
// after an outage a line can land after ones published behind it: consumers
// order by the chain's seq, not by stream sequence.

import fs from 'node:fs';
import {
  connect, credsAuthenticator, ErrorCode, Events, NatsError,
  type JetStreamClient, type NatsConnection,
} from 'nats';
import type { Logger } from 'pino';
import type { NatsAuditConfig } from '../config/types.js';
import { BatchQueue, PartialDeliveryError } from './batch-queue.js';
import { unseal } from './chain.js';
import type { SecondarySink, SinkObserver } from './events.js';

/** Tuning; the defaults suit production. */
export interface NatsSinkOptions {
  connectTimeoutMs?: number;
  /** How long one publish waits for JetStream's ack before it is retried. */
  ackTimeoutMs?: number;
  /** Longest wait between retries while NATS is unreachable. */
  retryMaxMs?: number;
}

const TYPE_KEY = '"type":"';
const SUBJECT_TOKEN = /^[a-z0-9_]{1,64}$/;

/**
 * The event type of an audit line, as a subject token. Every event starts with
 * scalar fields and `type` among them, so the first `"type":"` (which cannot
 * occur inside a JSON string) is the event's own; a line shaped otherwise is parsed.
 */
export function eventType(line: string): string {
  const at = line.indexOf(TYPE_KEY);
  let type: unknown;
  if (at > 0 && line.lastIndexOf('{', at) === 0) {
    const from = at + TYPE_KEY.length;
    type = line.slice(from, line.indexOf('"', from));
  } else {
    try {
      type = (JSON.parse(line) as { type?: unknown }).type;
    } catch {
      type = undefined;
    }
  }
  return typeof type === 'string' && SUBJECT_TOKEN.test(type) ? type : 'unknown';
}

/** Publishes sealed audit lines to a JetStream stream. Create it with NatsSecondarySink.create(). */
export class NatsSecondarySink implements SecondarySink {
  readonly name = 'nats';
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private streamReady = false;
  private disconnected = false;
  private closing = false;
  private closed = false;
  private readonly queue: BatchQueue;
  private readonly encoder = new TextEncoder();
  private readonly ackTimeoutMs: number;

  private constructor(
    private readonly config: NatsAuditConfig,
    private readonly node: string,
    private readonly observer: SinkObserver,
    private readonly log: Logger,
    private readonly options: NatsSinkOptions,
  ) {
    this.ackTimeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.queue = new BatchQueue({
      name: this.name, maxQueue: config.maxQueue, maxBatch: MAX_BATCH, observer, log,
      send: (lines) => this.send(lines),
      ...(options.retryMaxMs !== undefined && { retryMaxMs: options.retryMaxMs }),
    });
  }

  /**
   * Starts the sink and creates the stream when missing. An unreachable server
   * does not fail this: it is logged, lines queue up (bounded) and connecting
   * is retried in the background. Throws only for an unreadable credentials file.
   */
  static async create(config: NatsAuditConfig, node: string, observer: SinkObserver, log: Logger, options: NatsSinkOptions = {}): Promise<NatsSecondarySink> {
    if (config.credentials !== null) fs.accessSync(config.credentials, fs.constants.R_OK);
    const sink = new NatsSecondarySink(config, node, observer, log, options);
    try {
      await sink.ready();
    } catch (err) {
      sink.queue.failing(err as Error);
      log.warn({ err, servers: config.servers }, 'NATS unreachable at start; audit events are queued and delivery retried');
    }
    return sink;
  }

  /** False while not connected or while deliveries fail. */
  get healthy(): boolean {
    return this.queue.healthy && this.nc !== null && !this.disconnected && this.streamReady;
  }

  deliver(lines: readonly string[]): void {
    this.queue.push(lines);
  }

  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.close(timeoutMs, async () => {
      this.closing = true;
      const nc = this.nc;
      this.nc = null;
      this.js = null;
      // Rejects publishes still awaiting acks, so the queue's loop can end.
      await nc?.close().catch(() => undefined);
    });
  }

  /** The JetStream client, connecting and creating the stream first when needed. */
  private async ready(): Promise<JetStreamClient> {
    if (this.closing) throw new Error('NATS sink is closed');
    if (!this.nc) {
      const nc = await connect({
        servers: this.config.servers,
        name: 'dbward-audit',
        timeout: this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
        // Once connected the client reconnects by itself, for ever; before that, the queue's retries do.
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
        ...(this.config.credentials !== null && { authenticator: credsAuthenticator(fs.readFileSync(this.config.credentials)) }),
      });
      if (this.closing) {
        await nc.close();
        throw new Error('NATS sink is closed');
      }
      this.nc = nc;
      this.js = nc.jetstream();
      this.disconnected = false;
      this.watch(nc);
    }
    if (!this.streamReady) {
      await this.ensureStream(this.nc);
      this.streamReady = true;
    }
    return this.js!;
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === Events.Disconnect) {
          this.disconnected = true;
          this.log.warn({ server: s.data }, 'NATS connection lost; reconnecting');
        } else if (s.type === Events.Reconnect) {
          this.disconnected = false;
          this.log.info({ server: s.data }, 'NATS connection restored');
        }
      }
    })();
    void nc.closed().then((err) => {
      if (this.nc !== nc) return;
      // Closed for good (the client gave up, e.g. on repeated auth failures): the next retry connects anew.
      this.nc = null;
      this.js = null;
      this.streamReady = false;
      if (err) this.log.error({ err }, 'NATS connection closed');
    });
  }

  private async ensureStream(nc: NatsConnection): Promise<void> {
    const jsm = await nc.jetstreamManager();
    try {
      await jsm.streams.info(this.config.stream);
    } catch (err) {
      if (!(err instanceof NatsError && (err.code === '404' || err.api_error?.err_code === STREAM_NOT_FOUND))) throw err;
      await jsm.streams.add({ name: this.config.stream, subjects: [`${this.config.subject}.>`] });
      this.log.info({ stream: this.config.stream, subjects: `${this.config.subject}.>` }, 'created the NATS audit stream');
    }
  }

  private async send(batch: readonly string[]): Promise<void> {
    const js = await this.ready();
    // Publishing while reconnecting would only fill the client's buffer and time out.
    if (this.disconnected) throw new Error('NATS connection lost; reconnecting');
    for (let from = 0; from < batch.length; from += WINDOW) {
      const chunk = batch.slice(from, from + WINDOW);
      const results = await Promise.allSettled(chunk.map((line) => this.publish(js, line)));
      const bad = results.findIndex((r) => r.status === 'rejected');
      if (bad >= 0) {
        const reason = (results[bad] as PromiseRejectedResult).reason as unknown;
        // No responders: the stream went away; make it again before the retry.
        if (reason instanceof NatsError && reason.code === ErrorCode.NoResponders) this.streamReady = false;
        throw new PartialDeliveryError(from + bad, reason);
      }
    }
  }

  private async publish(js: JetStreamClient, line: string): Promise<void> {
    const sealed = unseal(line);
    const subject = `${this.config.subject}.${eventType(line)}`;
    try {
      await js.publish(subject, this.encoder.encode(line), {
        timeout: this.ackTimeoutMs,
        ...(sealed && { msgID: `${this.node}.${sealed.seq}` }),
      });
    } catch (err) {
      if (!isTooLarge(err)) throw err;
      // Retrying cannot help, and the line would block every line behind it.
      this.observer.dropped?.(1);
      this.log.error({ err, bytes: line.length, seq: sealed?.seq }, 'audit line too large for NATS; not published');
    }
  }
}

function isTooLarge(err: unknown): boolean {
  return err instanceof NatsError
    && (err.code === ErrorCode.MaxPayloadExceeded || err.api_error?.err_code === MESSAGE_TOO_LARGE);
}

/** JetStream API error codes. */
const STREAM_NOT_FOUND = 10059;
const MESSAGE_TOO_LARGE = 10054;
/** Publishes awaiting their acks at once. */
const WINDOW = 256;
const MAX_BATCH = 1024;
const ACK_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 5000;
