import { errorMessage } from './proc.ts';

/** How a server was found, in the order tried: explicit URL, standard local port, container, binary. */
export type ServerSource = 'env' | 'local' | 'container' | 'binary';

export const RESOLUTION_ORDER: readonly ServerSource[] = ['env', 'local', 'container', 'binary'];

export interface ResolvedServer {
  /** Connection URL (`nats://host:port`, `postgres://user@host:port/db`). */
  readonly url: string;
  readonly source: ServerSource;
  /** Stops what the kit started (container, process, temp dir); a no-op for 'env' and 'local'. Idempotent. */
  stop(): Promise<void>;
}

export interface ResolveOptions {
  /**
   * Force one strategy, or an ordered subset of them (tests of the kit itself). A forced call is not
   * memoized: it returns a server of its own, which the caller stops.
   */
  strategy?: ServerSource | readonly ServerSource[];
  /** Environment to read NATS_URL / DATABASE_URL / DOCKER_HOST from; default process.env. Not memoized either. */
  env?: NodeJS.ProcessEnv;
}

/** A strategy returns a server, or throws with the reason it does not apply (the next one is tried). */
export type Strategy = (env: NodeJS.ProcessEnv) => Promise<ResolvedServer>;

export async function resolveWith(
  what: string,
  strategies: Readonly<Record<ServerSource, Strategy>>,
  options: ResolveOptions,
): Promise<ResolvedServer> {
  const env = options.env ?? process.env;
  const order =
    options.strategy === undefined
      ? RESOLUTION_ORDER
      : typeof options.strategy === 'string'
        ? [options.strategy]
        : options.strategy;
  const reasons: string[] = [];
  for (const source of order) {
    try {
      return await strategies[source](env);
    } catch (error) {
      reasons.push(`${source}: ${errorMessage(error)}`);
    }
  }
  throw new Error(`no ${what} server could be resolved (${reasons.join('; ')})`);
}

/**
 * One resolution per process for the default call, shared by every caller (concurrent callers wait
 * for the same attempt). A failed attempt is forgotten so a later call tries again, and stopping the
 * shared server makes the next call resolve afresh.
 */
export function memoized(
  resolve: (options: ResolveOptions) => Promise<ResolvedServer>,
): (options?: ResolveOptions) => Promise<ResolvedServer> {
  let shared: Promise<ResolvedServer> | undefined;
  return (options = {}) => {
    if (options.strategy !== undefined || options.env !== undefined) return resolve(options);
    if (shared === undefined) {
      const attempt = resolve(options).then(
        (server): ResolvedServer => ({
          url: server.url,
          source: server.source,
          stop: async () => {
            if (shared === attempt) shared = undefined;
            await server.stop();
          },
        }),
      );
      shared = attempt;
      void attempt.catch(() => {
        if (shared === attempt) shared = undefined;
      });
    }
    return shared;
  };
}

export function external(url: string, source: 'env' | 'local'): ResolvedServer {
  return { url, source, stop: async () => {} };
}
