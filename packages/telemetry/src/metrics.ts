// Every metric Stageline exports, in one place (README, "Observability"): names `stageline_*` with
// their unit in the name, labels of bounded cardinality only — a method, a code, a consumer, an action,
// an outcome, a step kind, an environment — never a run, job or service id. One registry per process;
// each service serves it on its HTTP port (/metrics, beside /livez and /readyz) with `service` as a
// default label, so one Prometheus can scrape all four.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

/** What holds slots (a consume loop): read at each scrape. */
export interface SlotSource {
  readonly consumer: string;
  slots(): { busy: number; free: number };
}
const slotSources = new Set<SlotSource>();

/** Where the queue depths come from (the planner's runs), asked at scrape time. */
let queueSource: (() => Promise<Array<{ environment: string; depth: number }>>) | undefined;

/** The planner's queue, read at each scrape into `stageline_queue_depth`. */
export function trackQueues(source: () => Promise<Array<{ environment: string; depth: number }>>): () => void {
  queueSource = source;
  return () => {
    if (queueSource === source) queueSource = undefined;
  };
}

/** An outbox (one schema's), asked for its backlog at scrape time. */
export interface OutboxSource {
  readonly schema: string;
  backlog(): Promise<{ rows: number; oldestSeconds: number }>;
}
const outboxSources = new Set<OutboxSource>();

/** Reports `source`'s backlog in `stageline_outbox_pending_rows` and `_lag_seconds` until untracked. */
export function trackOutbox(source: OutboxSource): () => void {
  outboxSources.add(source);
  return () => outboxSources.delete(source);
}

/**
 * Both outbox gauges from one query per outbox (a failing one leaves its last values). A scrape collects
 * metrics concurrently: the two gauges share the read in flight.
 */
let outboxRead: Promise<void> | undefined;
function readOutboxes(): Promise<void> {
  outboxRead ??= queryOutboxes().finally(() => {
    outboxRead = undefined;
  });
  return outboxRead;
}

async function queryOutboxes(): Promise<void> {
  await Promise.all(
    [...outboxSources].map(async (source) => {
      try {
        const { rows, oldestSeconds } = await source.backlog();
        metrics.outboxPending.set({ schema: source.schema }, rows);
        metrics.outboxLag.set({ schema: source.schema }, oldestSeconds);
      } catch {
        // The database is away: the scrape still answers; health says why.
      }
    }),
  );
}

/** Counts `source`'s slots in `stageline_worker_slots` until the returned function is called. */
export function trackSlots(source: SlotSource): () => void {
  slotSources.add(source);
  return () => slotSources.delete(source);
}

/** Seconds: from a millisecond round trip to a long build. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

const registers = [registry];

export const metrics = {
  grpcCalls: new Counter({
    name: 'stageline_grpc_server_calls_total',
    help: 'gRPC calls answered, by method (/package.Service/Method) and status code',
    labelNames: ['method', 'code'] as const,
    registers,
  }),
  grpcDuration: new Histogram({
    name: 'stageline_grpc_server_call_duration_seconds',
    help: 'gRPC call latency from arrival to status (a stream: to its end), by method',
    labelNames: ['method'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  }),
  busPublished: new Counter({
    name: 'stageline_bus_published_messages_total',
    help: 'Messages published to JetStream, by subject family (requests, jobs.build, results.deploy, events.runs, …)',
    labelNames: ['subject'] as const,
    registers,
  }),
  busConsumed: new Counter({
    name: 'stageline_bus_consumed_messages_total',
    help: 'Messages consumed, by durable consumer and how each was settled (ack, retry, dead_letter, left)',
    labelNames: ['consumer', 'outcome'] as const,
    registers,
  }),
  busRedeliveries: new Counter({
    name: 'stageline_bus_redeliveries_total',
    help: 'Deliveries of a message received before (delivery count above 1), by consumer',
    labelNames: ['consumer'] as const,
    registers,
  }),
  deadLetters: new Counter({
    name: 'stageline_bus_dead_letters_total',
    help: 'Messages set aside to the dead-letter stream with their reason, by consumer',
    labelNames: ['consumer'] as const,
    registers,
  }),
  workerSlots: new Gauge({
    name: 'stageline_worker_slots',
    help: 'Slots of this process per durable consumer, busy (a message held) or free',
    labelNames: ['consumer', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const source of slotSources) {
        const { busy, free } = source.slots();
        this.inc({ consumer: source.consumer, state: 'busy' }, busy);
        this.inc({ consumer: source.consumer, state: 'free' }, free);
      }
    },
  }),
  jobs: new Counter({
    name: 'stageline_jobs_total',
    help: 'Jobs a worker finished, by kind (build, deploy) and outcome (succeeded, failed)',
    labelNames: ['kind', 'outcome'] as const,
    registers,
  }),
  jobDuration: new Histogram({
    name: 'stageline_job_duration_seconds',
    help: "A worker's time on one job, by kind",
    labelNames: ['kind'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  }),
  stepDuration: new Histogram({
    name: 'stageline_step_duration_seconds',
    help: 'Steps of a job (GIT_CLONE, BUILD, MIRROR_IMAGE, DEPLOYMENT, EXECUTING, …), by kind and outcome',
    labelNames: ['step', 'outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  }),
  buildCache: new Counter({
    name: 'stageline_build_cache_lookups_total',
    help: 'Build cache lookups of git builds: hit (the mirror has the image of the key) or miss',
    labelNames: ['result'] as const,
    registers,
  }),
  mirrorBytes: new Counter({
    name: 'stageline_mirror_bytes_total',
    help: 'Bytes copied into the mirror registry (images built or mirrored)',
    registers,
  }),
  runs: new Counter({
    name: 'stageline_runs_total',
    help: 'Runs finished, by action (DEPLOY, REDEPLOY, …) and outcome (SUCCEEDED, FAILED, CANCELED)',
    labelNames: ['action', 'outcome'] as const,
    registers,
  }),
  runDuration: new Histogram({
    name: 'stageline_run_duration_seconds',
    help: 'Runs from request to end, by action',
    labelNames: ['action'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  }),
  queueDepth: new Gauge({
    name: 'stageline_queue_depth',
    help: 'Runs waiting behind the active run, by environment id (bounded: environments are made by admins; none waiting: no series)',
    labelNames: ['environment'] as const,
    registers,
    async collect() {
      this.reset();
      if (queueSource === undefined) return;
      try {
        for (const { environment, depth } of await queueSource()) this.set({ environment }, depth);
      } catch {
        // The database is away: no series this scrape; health says why.
      }
    },
  }),
  outboxPending: new Gauge({
    name: 'stageline_outbox_pending_rows',
    help: 'Outbox rows not yet published, by schema',
    labelNames: ['schema'] as const,
    registers,
    // Both outbox gauges come from one read per scrape (see readOutboxes).
    collect: readOutboxes,
  }),
  outboxLag: new Gauge({
    name: 'stageline_outbox_lag_seconds',
    help: 'Age of the oldest outbox row not yet published, by schema (0: none waits)',
    labelNames: ['schema'] as const,
    registers,
    // Both outbox gauges come from one read per scrape (see readOutboxes).
    collect: readOutboxes,
  }),
  dbStatements: new Counter({
    name: 'stageline_db_statements_total',
    help: 'SQL statements sent to PostgreSQL (transaction begin and commit not included), by schema',
    labelNames: ['schema'] as const,
    registers,
  }),
  outboxSetAside: new Counter({
    name: 'stageline_outbox_set_aside_rows_total',
    help: 'Outbox rows set aside because the bus refuses them for a reason of their own (over max_payload, …), by schema',
    labelNames: ['schema'] as const,
    registers,
  }),
} as const;

let processMetrics = false;

/**
 * Names this process in every metric (`service`) and adds Node's own (CPU, memory, event loop lag,
 * as `stageline_process_*` / `stageline_nodejs_*`). Once per process; later calls only rename.
 */
export function startProcessMetrics(service: string): void {
  registry.setDefaultLabels({ service });
  if (processMetrics) return;
  processMetrics = true;
  collectDefaultMetrics({ register: registry, prefix: 'stageline_' });
}

/** The exposition the /metrics route serves. */
export async function scrape(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** A subject's family for a label: `<prefix>.jobs.build.<…>` → `jobs.build` (never an id). */
export function subjectFamily(subject: string): string {
  const parts = subject.split('.');
  const kind = parts[1] ?? '';
  const sub = parts[2] ?? '';
  // <prefix>.<kind>.<sub>.…: requests.<environment>, jobs.<build|deploy>, results.<build|deploy>,
  // events.<runs|environments|…>, logs.…, dlq.…, cancel.<run id>.
  if (kind === 'jobs' || kind === 'results' || kind === 'events') return `${kind}.${sub}`;
  return kind === '' ? 'other' : kind;
}

/** Seconds since `startedMs` (a `performance.now()` or `Date.now()` reading of the same clock). */
export function secondsSince(startedMs: number, now: number = performance.now()): number {
  return Math.max(0, (now - startedMs) / 1000);
}
