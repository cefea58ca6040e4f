import type { LogContext, LoggerNamespace, LoggerOptions, Logger as OrmLogger } from '@mikro-orm/core';
import type { Logger } from '@stageline/log';

// MikroORM colours some messages with ANSI escapes; log lines are JSON, so strip them.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching the ESC character is the point
const ANSI = /\x1B\[[0-9;]*m/g;

/**
 * MikroORM's logger interface over pino. Queries go out at debug level, without parameters: formatted
 * parameters would put secret values (env vars, tokens) into logs. Migrations applied are logged at info.
 */
export class PinoOrmLogger implements OrmLogger {
  readonly #log: Logger;
  #debugMode: boolean | LoggerNamespace[];

  constructor(log: Logger, options: LoggerOptions) {
    this.#log = log;
    this.#debugMode = options.debugMode ?? false;
  }

  log(namespace: string, message: string, context?: LogContext): void {
    if (!this.isEnabled(namespace as LoggerNamespace, context)) {
      return;
    }
    const text = message.replace(ANSI, '').replace(/\s+/g, ' ').trim();
    const fields = { orm: namespace, ...(context?.label ? { label: context.label } : {}) };
    if (context?.level === 'error') {
      this.#log.error(fields, text);
    } else if (context?.level === 'warning' || namespace === 'deprecated' || namespace === 'slow-query') {
      this.#log.warn(fields, text);
    } else if (namespace === 'migrator') {
      this.#log.info(fields, text);
    } else {
      this.#log.debug(fields, text);
    }
  }

  error(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'error' });
  }

  warn(namespace: string, message: string, context?: LogContext): void {
    this.log(namespace, message, { ...context, level: 'warning' });
  }

  logQuery(context: LogContext): void {
    const namespace = context.namespace ?? 'query';
    if (!this.isEnabled(namespace, context) || context.query === undefined) {
      return;
    }
    const fields = {
      orm: namespace,
      sql: context.query.replace(/\s+/g, ' ').trim(),
      ...(context.took !== undefined ? { tookMs: context.took } : {}),
      ...(context.results !== undefined ? { results: context.results } : {}),
      ...(context.affected !== undefined ? { affected: context.affected } : {}),
    };
    if (namespace === 'slow-query' || context.level === 'warning') {
      this.#log.warn(fields, 'slow query');
    } else {
      this.#log.debug(fields, 'query');
    }
  }

  setDebugMode(debugMode: boolean | LoggerNamespace[]): void {
    this.#debugMode = debugMode;
  }

  isEnabled(namespace: LoggerNamespace, context?: LogContext): boolean {
    if (context?.enabled !== undefined) {
      return context.enabled;
    }
    if (namespace === 'deprecated') {
      return true;
    }
    const mode = context?.debugMode ?? this.#debugMode;
    return mode === true || (Array.isArray(mode) && mode.includes(namespace));
  }
}
