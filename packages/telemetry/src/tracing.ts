// Traces (OpenTelemetry): off unless the standard `OTEL_*` variables ask for them (README, "Traces").
// Off, nothing is registered and every call below goes to the API's no-op tracer: a span costs a
// function call. On, one provider per process exports over OTLP/HTTP (JSON) in batches, spans are kept
// in the async context (AsyncLocalStorage), and W3C trace context crosses the bus in message headers.
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { loggingErrorHandler, setGlobalErrorHandler, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  SimpleSpanProcessor,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

export { type Context, type Span, SpanKind } from '@opentelemetry/api';
export type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';

type Env = Readonly<Record<string, string | undefined>>;

/** A bad `OTEL_*` value, naming the variable (the service exits 2, as for its own configuration). */
export class TracingConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.name = 'TracingConfigError';
  }
}

/** What the environment asks for: which exporters (none: tracing off), the sampler, batch settings. */
export interface TracingSettings {
  exporters: Array<'otlp' | 'console'>;
  sampler: Sampler;
  batch: {
    scheduledDelayMillis?: number;
    maxQueueSize?: number;
    maxExportBatchSize?: number;
    exportTimeoutMillis?: number;
  };
}

const set = (env: Env, name: string): string | undefined => {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
};

function nonNegative(env: Env, name: string): number | undefined {
  const raw = set(env, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new TracingConfigError(name, `must be a non-negative integer, got ${raw}`);
  return n;
}

function samplerFrom(env: Env): Sampler {
  const name = (set(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on').toLowerCase();
  const ratio = (): number => {
    const raw = set(env, 'OTEL_TRACES_SAMPLER_ARG') ?? '1';
    const r = Number(raw);
    if (!(r >= 0 && r <= 1)) throw new TracingConfigError('OTEL_TRACES_SAMPLER_ARG', `must be in [0, 1], got ${raw}`);
    return r;
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new TracingConfigError(
        'OTEL_TRACES_SAMPLER',
        `unknown sampler ${name} (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)`,
      );
  }
}

/**
 * Reads the standard variables. Tracing is on when `OTEL_TRACES_EXPORTER` names `otlp` or `console`,
 * or (unset) when an OTLP endpoint is given (`OTEL_EXPORTER_OTLP_ENDPOINT` or `…_TRACES_ENDPOINT`);
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keeps it off whatever else is set.
 */
export function tracingSettings(env: Env = process.env): TracingSettings {
  const off: TracingSettings = { exporters: [], sampler: new AlwaysOffSampler(), batch: {} };
  if (set(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return off;
  const endpoint = set(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? set(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const listed = set(env, 'OTEL_TRACES_EXPORTER');
  const names = (listed ?? (endpoint === undefined ? 'none' : 'otlp'))
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '');
  if (names.includes('none')) return off;
  const exporters: TracingSettings['exporters'] = [];
  for (const n of names) {
    if (n !== 'otlp' && n !== 'console') {
      throw new TracingConfigError('OTEL_TRACES_EXPORTER', `unsupported exporter ${n} (otlp, console or none)`);
    }
    if (!exporters.includes(n)) exporters.push(n);
  }
  if (exporters.includes('otlp')) {
    for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
      const protocol = set(env, name);
      if (protocol !== undefined && protocol !== 'http/json') {
        throw new TracingConfigError(name, `only http/json is supported, got ${protocol}`);
      }
      if (protocol !== undefined) break;
    }
  }
  const batch: TracingSettings['batch'] = {};
  const delay = nonNegative(env, 'OTEL_BSP_SCHEDULE_DELAY');
  if (delay !== undefined) batch.scheduledDelayMillis = delay;
  const queue = nonNegative(env, 'OTEL_BSP_MAX_QUEUE_SIZE');
  if (queue !== undefined) batch.maxQueueSize = queue;
  const size = nonNegative(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE');
  if (size !== undefined) batch.maxExportBatchSize = size;
  const timeout = nonNegative(env, 'OTEL_BSP_EXPORT_TIMEOUT');
  if (timeout !== undefined) batch.exportTimeoutMillis = timeout;
  return { exporters, sampler: samplerFrom(env), batch };
}

export interface StartTracingOptions {
  /** The service (`control`, `planner`, …): `service.name` is `stageline-<service>` unless `OTEL_SERVICE_NAME`. */
  service: string;
  env?: Env;
  /**
   * Test seam: span processors of the caller's own (e.g. `memorySpans().processor`). Given, tracing is
   * on with them whatever the environment says (the environment's exporters are added if it asks).
   */
  spanProcessors?: SpanProcessor[];
  /**
   * Told when spans cannot be exported (the collector away, refusing, timing out): the first failure,
   * then at most one a minute with the number of failures since. Default: nothing is said.
   */
  onExportError?: (error: unknown, failures: number) => void;
}

/** The first failure at once, then at most one report a minute, counting the ones in between. */
function throttled(report: (error: unknown, failures: number) => void, everyMs = 60_000): (error: unknown) => void {
  let last = Number.NEGATIVE_INFINITY;
  let failures = 0;
  return (error) => {
    failures++;
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    // Outside any span: the export was started from some span's context, which this is not about.
    context.with(ROOT_CONTEXT, () => report(error, failures));
    failures = 0;
  };
}

export interface Tracing {
  /** False: nothing registered, every span is the API's no-op one. */
  readonly enabled: boolean;
  /** Exports what is pending and unregisters the provider (idempotent). */
  shutdown(): Promise<void>;
}

let current: { provider: TracerProvider; shutdown: Promise<void> | undefined } | undefined;

/**
 * Starts tracing for this process as the environment says (`packages/service` calls it for every
 * service). Throws TracingConfigError for a bad `OTEL_*` value.
 */
export function startTracing(options: StartTracingOptions): Tracing {
  const env = options.env ?? process.env;
  const settings = tracingSettings(env);
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  for (const exporter of settings.exporters) {
    processors.push(
      exporter === 'otlp'
        ? new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), ...settings.batch })
        : new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() }),
    );
  }
  if (processors.length === 0) return { enabled: false, shutdown: async () => undefined };
  if (current !== undefined) throw new Error('tracing is already started in this process');
  const resource = resourceFromAttributes({ 'service.version': env.STAGELINE_VERSION ?? '0.1.0' })
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ 'service.name': set(env, 'OTEL_SERVICE_NAME') ?? `stageline-${options.service}` }));
  const provider = new TracerProvider({
    resource,
    spanProcessors: processors,
    sampler: settings.exporters.length > 0 ? settings.sampler : new ParentBasedSampler({ root: new AlwaysOnSampler() }),
  });
  const mine = { provider, shutdown: undefined as Promise<void> | undefined };
  current = mine;
  if (options.onExportError) setGlobalErrorHandler(throttled(options.onExportError));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    enabled: true,
    shutdown: () => {
      mine.shutdown ??= (async () => {
        try {
          await provider.shutdown();
        } finally {
          if (current === mine) {
            current = undefined;
            trace.disable();
            propagation.disable();
            context.disable();
            setGlobalErrorHandler(loggingErrorHandler());
          }
        }
      })();
      return mine.shutdown;
    },
  };
}

/** Test seam: spans kept in memory, exported as each one ends. */
export function memorySpans(): { processor: SpanProcessor; spans(): ReadableSpan[]; reset(): void } {
  const exporter = new InMemorySpanExporter();
  return {
    processor: new SimpleSpanProcessor({ exporter }),
    spans: () => exporter.getFinishedSpans(),
    reset: () => exporter.reset(),
  };
}

const tracer = () => trace.getTracer('stageline');

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** The parent, e.g. from `contextFromHeaders`; default the active context. */
  parent?: Context;
}

/**
 * Runs `fn` inside a new active span, which ends when `fn` settles; a throw marks it as an error (and
 * is rethrown). With tracing off the span is the no-op one.
 */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  const spanOptions = {
    kind: options.kind ?? SpanKind.INTERNAL,
    ...(options.attributes ? { attributes: options.attributes } : {}),
  };
  return tracer().startActiveSpan(name, spanOptions, parent, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      failSpan(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

/** Starts a span that is not made active (the caller ends it), child of the active one. */
export function startSpan(name: string, options: SpanOptions = {}): Span {
  const spanOptions = {
    kind: options.kind ?? SpanKind.INTERNAL,
    ...(options.attributes ? { attributes: options.attributes } : {}),
  };
  return tracer().startSpan(name, spanOptions, options.parent ?? context.active());
}

/** Runs `fn` with `span` active (a span started with `startSpan`, ended by the caller). */
export function inSpanContext<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Marks `span` failed by `error` (recorded as an exception event). */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/** Marks `span` failed with `message` (a refusal that is not an exception). */
export function spanError(span: Span, message: string): void {
  if (span.isRecording()) span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/** The active context, to carry work started now into a callback run later (`inContext`). */
export function activeContext(): Context {
  return context.active();
}

/** Runs `fn` with `ctx` active. */
export function inContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** W3C trace context of the active span as headers (`traceparent`, `tracestate`); empty when off. */
export function traceHeaders(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The remote parent named by `traceparent`/`tracestate` headers, read through `get`. */
export function contextFromHeaders(get: (name: string) => string | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, undefined, {
    keys: () => ['traceparent', 'tracestate'],
    get: (_carrier, key) => get(key),
  });
}

/** Ids of the active span, for log lines: undefined outside a (valid) span. */
export function activeTraceIds(): { traceId: string; spanId: string } | undefined {
  const span = trace.getSpan(context.active());
  if (span === undefined) return undefined;
  const c = span.spanContext();
  return trace.isSpanContextValid(c) ? { traceId: c.traceId, spanId: c.spanId } : undefined;
}
