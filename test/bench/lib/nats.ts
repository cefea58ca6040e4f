// The benchmark's own nats-server (anonymous, JetStream, with its monitoring port): the machine's shared
// server also carries other work, so its counters and CPU would not be the scenario's. Messages per
// service-deploy come from its /varz (in_msgs, out_msgs), read before and after a measurement.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@stageline/testkit';

export interface BenchNats {
  url: string;
  pid: number;
  /** Messages the server received and sent so far. */
  counters(): Promise<NatsCounters>;
  stop(): Promise<void>;
}

export interface NatsCounters {
  inMsgs: number;
  outMsgs: number;
}

export async function startBenchNats(): Promise<BenchNats> {
  const dir = mkdtempSync(join(tmpdir(), 'stageline-bench-nats-'));
  const [port, monitor] = [await freePort(), await freePort()];
  const logFile = join(dir, 'nats-server.log');
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(
    'nats-server',
    ['-js', '-a', '127.0.0.1', '-p', String(port), '-m', String(monitor), '-sd', join(dir, 'store')],
    { stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const varz = async (): Promise<{ in_msgs: number; out_msgs: number }> =>
    (await (await fetch(`http://127.0.0.1:${monitor}/varz`)).json()) as { in_msgs: number; out_msgs: number };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await varz();
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        const output = (() => {
          try {
            return readFileSync(logFile, 'utf8');
          } catch {
            return '';
          }
        })();
        await stop();
        throw new Error(`the benchmark's nats-server did not start: ${output.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    async counters() {
      const v = await varz();
      return { inMsgs: v.in_msgs, outMsgs: v.out_msgs };
    },
    stop,
  };
}

export function countersBetween(a: NatsCounters, b: NatsCounters): NatsCounters {
  return { inMsgs: b.inMsgs - a.inMsgs, outMsgs: b.outMsgs - a.outMsgs };
}
