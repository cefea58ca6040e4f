// Traces are off unless OTEL_* asks; on, spans nest through async code, cross a carrier as W3C trace
// context, and every log line written inside a span carries its trace id.
import { Writable } from 'node:stream';
import { createLogger } from '@stageline/log';
import { afterEach, describe, expect, it } from 'vitest';
import {
  activeTraceIds,
  contextFromHeaders,
  inSpan,
  memorySpans,
  SpanKind,
  startTracing,
  type Tracing,
  TracingConfigError,
  traceHeaders,
  tracingSettings,
} from '../src/index.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger({ service: 'trace-test', level: 'info', destination }) };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

let tracing: Tracing | undefined;
afterEach(async () => {
  await tracing?.shutdown();
  tracing = undefined;
});

describe('tracing settings from OTEL_*', () => {
  it('is off by default, and off when disabled whatever else is set', () => {
    expect(tracingSettings({}).exporters).toEqual([]);
    expect(tracingSettings({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }).exporters).toEqual([]);
    expect(
      tracingSettings({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).exporters,
    ).toEqual([]);
  });

  it('is on with an OTLP endpoint, or an exporter named', () => {
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).exporters).toEqual(['otlp']);
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp,console' }).exporters).toEqual(['otlp', 'console']);
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_BSP_SCHEDULE_DELAY: '250' }).batch).toEqual({
      scheduledDelayMillis: 250,
    });
  });

  it('refuses a bad value naming the variable', () => {
    const refusal = (env: Record<string, string>) => {
      try {
        tracingSettings(env);
      } catch (e) {
        expect(e).toBeInstanceOf(TracingConfigError);
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(refusal({ OTEL_TRACES_EXPORTER: 'jaeger' })).toMatch(/^OTEL_TRACES_EXPORTER: unsupported exporter jaeger/);
    expect(refusal({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatch(
      /^OTEL_EXPORTER_OTLP_PROTOCOL: only http\/json/,
    );
    expect(refusal({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'sometimes' })).toMatch(
      /^OTEL_TRACES_SAMPLER:/,
    );
    expect(refusal({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_BSP_SCHEDULE_DELAY: '-1' })).toMatch(
      /^OTEL_BSP_SCHEDULE_DELAY:/,
    );
  });
});

describe('with tracing off', () => {
  it('runs the work, propagates nothing and adds no ids to log lines', async () => {
    tracing = startTracing({ service: 'test', env: {} });
    expect(tracing.enabled).toBe(false);
    const { lines, log } = capture();
    const result = await inSpan('work', {}, async () => {
      log.info('inside');
      return { headers: traceHeaders(), ids: activeTraceIds() };
    });
    await flush();
    expect(result).toEqual({ headers: {}, ids: undefined });
    expect(lines[0]?.msg).toBe('inside');
    expect(lines[0]).not.toHaveProperty('trace_id');
  });
});

describe('with tracing on', () => {
  it('nests spans across awaits and puts the trace id on every line written inside one', async () => {
    const memory = memorySpans();
    tracing = startTracing({ service: 'test', env: {}, spanProcessors: [memory.processor] });
    expect(tracing.enabled).toBe(true);
    const { lines, log } = capture();
    const child = log.child({ component: 'child' });
    log.info('before');
    await inSpan('outer', {}, async () => {
      await new Promise((r) => setTimeout(r, 5));
      log.info('in outer');
      await inSpan('inner', {}, async () => {
        await flush();
        child.info('in inner');
      });
    });
    log.info('after');
    await flush();
    const [inner, outer] = memory.spans();
    expect(inner?.name).toBe('inner');
    expect(outer?.name).toBe('outer');
    expect(inner?.parentSpanContext?.spanId).toBe(outer?.spanContext().spanId);
    const traceId = outer?.spanContext().traceId;
    expect(inner?.spanContext().traceId).toBe(traceId);
    const byMsg = new Map(lines.map((l) => [l.msg, l]));
    expect(byMsg.get('before')).not.toHaveProperty('trace_id');
    expect(byMsg.get('after')).not.toHaveProperty('trace_id');
    expect(byMsg.get('in outer')).toMatchObject({
      trace_id: traceId,
      span_id: outer?.spanContext().spanId,
      trace_flags: '01',
    });
    expect(byMsg.get('in inner')).toMatchObject({ trace_id: traceId, span_id: inner?.spanContext().spanId });
  });

  it('carries a span to another process as traceparent, whose spans become its children', async () => {
    const memory = memorySpans();
    tracing = startTracing({ service: 'test', env: {}, spanProcessors: [memory.processor] });
    const headers = await inSpan('publish', { kind: SpanKind.PRODUCER }, async () => traceHeaders());
    expect(headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const parent = contextFromHeaders((name) => headers[name]);
    await inSpan('process', { kind: SpanKind.CONSUMER, parent }, async () => undefined);
    const [publish, process] = memory.spans();
    expect(process?.spanContext().traceId).toBe(publish?.spanContext().traceId);
    expect(process?.parentSpanContext?.spanId).toBe(publish?.spanContext().spanId);
    expect(process?.parentSpanContext?.isRemote).toBe(true);
  });

  it('marks a span failed when its work throws, and rethrows', async () => {
    const memory = memorySpans();
    tracing = startTracing({ service: 'test', env: {}, spanProcessors: [memory.processor] });
    await expect(
      inSpan('fails', {}, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const [span] = memory.spans();
    expect(span?.status).toMatchObject({ code: 2, message: 'boom' });
    expect(span?.events[0]?.name).toBe('exception');
  });
});
