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

export function createLogger(options: CreateLoggerOptions): Logger {
  const config: LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service: options.service, version: options.version ?? process.env.STAGELINE_VERSION ?? '0.1.0' },
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
