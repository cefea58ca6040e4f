import { context, trace } from '@opentelemetry/api';
import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Paths whose values never reach a log line: credentials, secret env values, connection strings. */
export const REDACT_PATHS: readonly string[] = [
  'password',
  '*.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  '*.headers.authorization',
  'secret',
  '*.secret',
  'credentials',
  '*.credentials',
  'databaseUrl',
  '*.databaseUrl',
  // EnvVar values of secret env vars are cleared before logging; values are never logged wholesale.
  'envVars[*].value',
  '*.envVars[*].value',
  '*.*.envVars[*].value',
];

export interface CreateLoggerOptions {
  service: string;
  version?: string;
  level?: string;
  /** Where lines go; default stdout. Tests pass a stream to assert on output. */
  destination?: pino.DestinationStream;
}

/**
 * The active span's ids on every line written inside one (`trace_id`, `span_id`, `trace_flags`, the
 * names OpenTelemetry's own pino instrumentation uses), so a line leads to its trace. Outside a span,
 * or with tracing off, nothing is added.
 */
export function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const c = span.spanContext();
  if (!trace.isSpanContextValid(c)) return {};
  return { trace_id: c.traceId, span_id: c.spanId, trace_flags: `0${(c.traceFlags & 0xff).toString(16)}`.slice(-2) };
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const config: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: options.service, version: options.version ?? process.env.STAGELINE_VERSION ?? '0.1.0' },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: traceFields,
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
