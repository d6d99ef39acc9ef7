/**
 * What the service counts, behind a small interface the layers call; the Prometheus registry is
 * one implementation, `noMetrics` the default. Labels never carry values, keys, ids or raw URLs:
 * routes are reported by their pattern.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type KmsOutcome = 'ok' | 'denied' | 'unavailable' | 'error';

export interface Metrics {
  httpRequest(route: string, method: string, status: number, seconds: number): void;
  cryptoOperation(operation: 'encrypt' | 'decrypt', algorithm: string, outcome: 'ok' | 'error', count?: number): void;
  kmsCall(provider: string, operation: 'wrap' | 'unwrap', outcome: KmsOutcome, seconds: number): void;
  dataKeyCache(result: 'hit' | 'miss', count?: number): void;
  auditWriteFailure(): void;
  /** Audit records copied from the instance's spool into the database. */
  auditShipped(count: number): void;
  /** A torn spool tail was cut off at start-up (kept in a quarantine file). */
  auditSpoolQuarantined(): void;
  /** Report the spool's records not yet in the database, read at each scrape. */
  watchAuditBacklog(read: () => number): void;
  /** Whether a KMS circuit of a configured region is open (cached keys still serve). */
  kmsDegraded(degraded: boolean): void;
  /** Entries of the fleet's change feed applied here, by kind ('reset': every cache dropped). */
  fleetChange(kind: string, count?: number): void;
  /** Report how long ago the change feed was last read up to its head (seconds), read at each scrape. */
  watchFleetLag(read: () => number): void;
  /** Data keys whose wrapping is older than the rotation period, as last counted. */
  rotationDue(count: number): void;
}

export const noMetrics: Metrics = {
  httpRequest() {},
  cryptoOperation() {},
  kmsCall() {},
  dataKeyCache() {},
  auditWriteFailure() {},
  auditShipped() {},
  auditSpoolQuarantined() {},
  watchAuditBacklog() {},
  kmsDegraded() {},
  fleetChange() {},
  watchFleetLag() {},
  rotationDue() {},
};

export function createMetrics(): Metrics & { registry: Registry } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests by route pattern, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route pattern and method',
    labelNames: ['route', 'method'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const crypto = new Counter({ name: 'crypto_operations_total', help: 'Field encryptions and decryptions by algorithm and outcome', labelNames: ['operation', 'algorithm', 'outcome'], registers: [registry] });
  const kmsCalls = new Counter({ name: 'kms_calls_total', help: 'Master-key wraps and unwraps by provider and outcome', labelNames: ['provider', 'operation', 'outcome'], registers: [registry] });
  const kmsLatency = new Histogram({
    name: 'kms_call_duration_seconds',
    help: 'Master-key wrap and unwrap latency by provider and outcome',
    labelNames: ['provider', 'operation', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const cache = new Counter({ name: 'data_key_cache_requests_total', help: 'Data-key cache lookups by result', labelNames: ['result'], registers: [registry] });
  const audit = new Counter({ name: 'audit_write_failures_total', help: 'Audit events that could not be written', registers: [registry] });
  const shipped = new Counter({ name: 'audit_records_shipped_total', help: 'Audit records copied from the local spool into the database', registers: [registry] });
  const quarantined = new Counter({ name: 'audit_spool_quarantined_total', help: 'Torn spool tails cut off at start-up and kept for inspection', registers: [registry] });
  let backlog: (() => number) | undefined;
  const degraded = new Gauge({ name: 'kms_degraded', help: '1 while a KMS circuit of a configured region is open (cached data keys still serve)', registers: [registry] });
  new Gauge({
    name: 'audit_spool_backlog',
    help: 'Audit records in the local spool not yet in the database',
    registers: [registry],
    collect() {
      this.set(backlog?.() ?? 0);
    },
  });

  const fleetChanges = new Counter({ name: 'fleet_changes_applied_total', help: 'Change-feed entries applied to this instance\'s caches, by kind (reset: all dropped)', labelNames: ['kind'], registers: [registry] });
  let fleetLag: (() => number) | undefined;
  new Gauge({
    name: 'fleet_change_feed_lag_seconds',
    help: 'Seconds since this instance last read the change feed up to its head; caches are not trusted beyond FLEET_MAX_LAG_MS',
    registers: [registry],
    collect() {
      this.set(fleetLag?.() ?? 0);
    },
  });

  const rotationDue = new Gauge({
    name: 'data_keys_rotation_due',
    help: 'Data keys whose wrapping is older than KEY_ROTATION_PERIOD_DAYS (counted in the key vault every 10 minutes, not per scrape; 0 when the period is 0)',
    registers: [registry],
  });

  return {
    registry,
    httpRequest(route, method, status, seconds) {
      requests.inc({ route, method, status: String(status) });
      latency.observe({ route, method }, seconds);
    },
    cryptoOperation(operation, algorithm, outcome, count = 1) {
      if (count > 0) crypto.inc({ operation, algorithm, outcome }, count);
    },
    kmsCall(provider, operation, outcome, seconds) {
      kmsCalls.inc({ provider, operation, outcome });
      kmsLatency.observe({ provider, operation, outcome }, seconds);
    },
    dataKeyCache(result, count = 1) {
      if (count > 0) cache.inc({ result }, count);
    },
    auditWriteFailure() {
      audit.inc();
    },
    auditShipped(count) {
      if (count > 0) shipped.inc(count);
    },
    auditSpoolQuarantined() {
      quarantined.inc();
    },
    watchAuditBacklog(read) {
      backlog = read;
    },
    kmsDegraded(value) {
      degraded.set(value ? 1 : 0);
    },
    fleetChange(kind, count = 1) {
      if (count > 0) fleetChanges.inc({ kind }, count);
    },
    watchFleetLag(read) {
      fleetLag = read;
    },
    rotationDue(count) {
      rotationDue.set(count);
    },
  };
}
