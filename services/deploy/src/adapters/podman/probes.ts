// One readiness probe, as Kubernetes defines them: HTTP GET answering 200–399, a TCP connect, or an exec exiting 0.
import net from 'node:net';
import type { Probe } from '../../domain/workload.ts';

export interface ProbeTarget {
  /** Where the probed port answers from the host: the published 127.0.0.1 port, or the container's address. */
  address(port: number): { host: string; port: number } | undefined;
  exec(argv: readonly string[], signal: AbortSignal): Promise<number>;
}

export interface ProbeResult {
  ready: boolean;
  /** Why not, for the "not ready after Ns: …" message. */
  detail: string;
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const done = (error?: Error): void => {
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`timed out after ${timeoutMs} ms`)));
    socket.once('connect', () => done());
    socket.once('error', (e) => done(e));
  });
}

const describe = (e: unknown): string => {
  const error = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return error.cause?.code ?? error.code ?? error.cause?.message ?? error.message ?? String(e);
};

export async function runProbe(probe: Probe, target: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  switch (probe.type) {
    case 'tcp': {
      const at = target.address(probe.port);
      if (at === undefined) return { ready: false, detail: `no address for port ${probe.port} yet` };
      try {
        await tcpConnect(at.host, at.port, timeoutMs);
        return { ready: true, detail: `tcp ${at.host}:${at.port} accepts connections` };
      } catch (e) {
        return { ready: false, detail: `tcp ${at.host}:${at.port}: ${describe(e)}` };
      }
    }
    case 'http': {
      const at = target.address(probe.port);
      if (at === undefined) return { ready: false, detail: `no address for port ${probe.port} yet` };
      const url = `http://${at.host}:${at.port}${probe.path.startsWith('/') ? '' : '/'}${probe.path}`;
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
        await response.body?.cancel();
        const ready = response.status >= 200 && response.status < 400;
        return { ready, detail: `GET ${url}: ${response.status}` };
      } catch (e) {
        return { ready: false, detail: `GET ${url}: ${describe(e)}` };
      }
    }
    case 'exec': {
      try {
        const code = await target.exec(probe.command, AbortSignal.timeout(Math.max(timeoutMs, 5_000)));
        return { ready: code === 0, detail: `exec ${probe.command.join(' ')}: exit ${code}` };
      } catch (e) {
        return { ready: false, detail: `exec ${probe.command.join(' ')}: ${describe(e)}` };
      }
    }
  }
}
