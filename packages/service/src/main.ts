// The life of a service process: configuration, logger, start-up that registers what it opens, and a
// drain on SIGTERM/SIGINT that closes it all in reverse order.
import { createLogger, type Logger } from '@stageline/log';
import { startProcessMetrics, startTracing, type Tracing, TracingConfigError } from '@stageline/telemetry';
import { ConfigError, type Env } from './config.ts';

export interface ServiceContext<C> {
  config: C;
  log: Logger;
  /** Registers something to close at shutdown; closed in reverse order of registration. */
  onClose(name: string, close: () => Promise<void> | void): void;
}

/**
 * Runs a service: exit code 2 for a bad configuration (naming the variable), 1 when start-up fails
 * (closing what was already open), 0 after a clean drain on SIGTERM/SIGINT.
 */
export async function runService<C extends { logLevel: string }>(
  name: string,
  loadConfig: (env: Env) => C,
  start: (ctx: ServiceContext<C>) => Promise<void>,
): Promise<void> {
  let config: C;
  let tracing: Tracing;
  // The logger comes after the configuration it is made from: export failures find it here.
  const told: { log?: Logger } = {};
  try {
    config = loadConfig(process.env);
    // Off unless OTEL_* asks (README, "Traces"): then every span of this process is exported.
    tracing = startTracing({
      service: name,
      onExportError: (err, failures) => told.log?.warn({ err, failures }, 'spans could not be exported'),
    });
  } catch (e) {
    if (!(e instanceof ConfigError || e instanceof TracingConfigError)) throw e;
    console.error(`${name}: invalid configuration: ${e.message}`);
    process.exit(2);
  }
  const log = createLogger({ service: name, level: config.logLevel });
  told.log = log;
  if (tracing.enabled) log.info('tracing on: spans exported as OTEL_* says');
  startProcessMetrics(name);
  const closers: { name: string; close: () => Promise<void> | void }[] = [];
  let stopping: Promise<void> | undefined;

  const stop = (reason: string, exitCode: number): Promise<void> => {
    stopping ??= (async () => {
      log.info({ reason }, 'shutting down');
      let code = exitCode;
      for (const closer of closers.toReversed()) {
        try {
          await closer.close();
        } catch (err) {
          log.error({ err, name: closer.name }, 'error while closing');
          code = code === 0 ? 1 : code;
        }
      }
      // Last: the spans of the drain itself are exported too.
      await tracing.shutdown().catch((err: unknown) => log.warn({ err }, 'exporting the last spans failed'));
      log.info({ exitCode: code }, 'stopped');
      process.exit(code);
    })();
    return stopping;
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void stop(signal, 0));

  try {
    await start({ config, log, onClose: (closerName, close) => closers.push({ name: closerName, close }) });
  } catch (err) {
    log.fatal({ err }, `${name} failed to start`);
    await stop('start-up failed', 1);
  }
}
