// Health means ready: every few seconds a service asks its own dependencies (its database, its bus)
// whether they answer. gRPC health follows (NOT_SERVING while one does not, SERVING again when all do),
// and a plaintext HTTP port answers the probes of orchestrators, which cannot present client
// certificates: /livez (the process answers) and /readyz (its dependencies answer too). The same port
// serves /metrics: the process's Prometheus metrics (@stageline/telemetry), for the same reason.
import { createServer, type Server } from 'node:http';
import type { NatsConnection } from '@stageline/bus';
import type { Logger } from '@stageline/log';
import { scrape } from '@stageline/telemetry';

/** A readiness check: true when the dependency answers. It should not throw; a throw counts as false. */
export type Check = () => Promise<boolean>;

export interface HealthOptions {
  /** host:port of the plaintext HTTP probe port; port 0 picks a free one (read it back from `address`). */
  listen: string;
  /** By dependency name (`database`, `bus`), each asked every `intervalMs`. */
  checks: Readonly<Record<string, Check>>;
  /** Called when readiness changes (and once with the first result): e.g. gRPC `setServing`. */
  onChange?(ready: boolean, failing: readonly string[]): void;
  log: Logger;
  /** Default 2000 ms. */
  intervalMs?: number;
  /** How long one check may take before it counts as failed; default 2000 ms. */
  timeoutMs?: number;
}

export interface Health {
  /** The HTTP address actually bound, host:port. */
  readonly address: string;
  /** Dependencies failing at the last look (empty: ready). */
  failing(): readonly string[];
  /** Stops checking and closes the HTTP port. Idempotent. */
  close(): Promise<void>;
}

/** The bus answers: a round trip to the NATS server (PING/PONG) within the timeout. */
export function busAnswers(nc: NatsConnection, timeoutMs = 2_000): Check {
  return () => withTimeout(nc.isClosed() ? Promise.resolve(false) : nc.flush().then(() => true), timeoutMs);
}

function withTimeout(check: Promise<boolean>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  return Promise.race([check.catch(() => false), timeout]).finally(() => clearTimeout(timer));
}

function listen(server: Server, address: string): Promise<string> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve, reject) => {
    server.once('error', (e) =>
      reject(new Error(`health port cannot listen on ${address}: ${e.message}`, { cause: e })),
    );
    server.listen(port, host, () => {
      const bound = server.address();
      resolve(bound !== null && typeof bound === 'object' ? `${address.slice(0, colon)}:${bound.port}` : address);
    });
  });
}

/** Starts the checks and the probe port; resolves once the first checks have run and the port listens. */
export async function startHealth(options: HealthOptions): Promise<Health> {
  const intervalMs = options.intervalMs ?? 2_000;
  const timeoutMs = options.timeoutMs ?? 2_000;
  const log = options.log.child({ component: 'health' });
  let failing: string[] = [];
  let reported: boolean | undefined;

  const look = async (): Promise<void> => {
    const results = await Promise.all(
      Object.entries(options.checks).map(
        async ([name, check]) => [name, await withTimeout(check(), timeoutMs)] as const,
      ),
    );
    failing = results.filter(([, ok]) => !ok).map(([name]) => name);
    const ready = failing.length === 0;
    if (ready !== reported) {
      if (reported !== undefined) {
        if (ready) log.info('ready again: every dependency answers');
        else log.warn({ failing }, 'not ready: a dependency does not answer');
      }
      reported = ready;
      options.onChange?.(ready, failing);
    }
  };

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const loop = async () => {
    await look().catch((e: unknown) => log.warn({ err: e }, 'health check failed'));
    if (!stopped) timer = setTimeout(() => void loop(), intervalMs);
  };
  await loop();

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      if (failing.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else
        res
          .writeHead(503, { 'content-type': 'text/plain' })
          .end(`not ready: ${failing.map((name) => `${name} does not answer`).join('; ')}\n`);
    } else if (path === '/metrics') {
      scrape().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
        (e: unknown) => {
          log.warn({ err: e }, 'metrics could not be collected');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n');
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /livez, /readyz or /metrics\n');
    }
  });
  const address = await listen(server, options.listen);
  log.info({ address }, 'health port listening (plaintext HTTP: /livez, /readyz, /metrics)');

  let closing: Promise<void> | undefined;
  return {
    address,
    failing: () => failing,
    close: () => {
      closing ??= (async () => {
        stopped = true;
        clearTimeout(timer);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}
