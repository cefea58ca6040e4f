// What the overhead scenario turns on to measure the cost of observability: an OTLP/HTTP (JSON)
// receiver standing in for a collector (counts what it is sent, keeps nothing), and a scraper reading
// each service's /metrics every second, as a (busy) Prometheus would.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { BenchStack } from './stack.ts';

export interface Collector {
  /** `OTEL_EXPORTER_OTLP_ENDPOINT` for the services. */
  endpoint: string;
  counts(): { spans: number; exports: number; bytes: number };
  close(): Promise<void>;
}

export async function startCollector(): Promise<Collector> {
  let spans = 0;
  let exports = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      exports++;
      bytes += body.length;
      try {
        const parsed = JSON.parse(body.toString()) as {
          resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: unknown[] }> }>;
        };
        for (const rs of parsed.resourceSpans ?? [])
          for (const ss of rs.scopeSpans ?? []) spans += ss.spans?.length ?? 0;
      } catch {
        // Counted as an export all the same.
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts: () => ({ spans, exports, bytes }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface Scraper {
  counts(): { scrapes: number; bytes: number; failures: number };
  stop(): Promise<void>;
}

/** Where the stack's statements are counted: its database and each service's /metrics. */
export function statementSources(stack: BenchStack): { databaseUrl: string; metricsUrls: string[] } {
  return { databaseUrl: stack.databaseUrl, metricsUrls: metricsUrls(stack) };
}

/** The HTTP port each service logged at start (`health port listening`). */
function metricsUrls(stack: BenchStack): string[] {
  const urls: string[] = [];
  for (const p of stack.procs) {
    for (const line of readFileSync(p.logFile, 'utf8').split('\n')) {
      if (!line.includes('health port listening')) continue;
      urls.push(`http://${(JSON.parse(line) as { address: string }).address}/metrics`);
      break;
    }
  }
  return urls;
}

export function startScraper(stack: BenchStack, intervalMs = 1_000): Scraper {
  const urls = metricsUrls(stack);
  let scrapes = 0;
  let bytes = 0;
  let failures = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await Promise.all(
        urls.map(async (url) => {
          try {
            const text = await (await fetch(url)).text();
            scrapes++;
            bytes += text.length;
          } catch {
            failures++;
          }
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    counts: () => ({ scrapes, bytes, failures }),
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}
