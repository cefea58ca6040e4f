// A real control service for the CLI's tests: `node services/control/src/main.ts` as a process, as
// production runs it — TLS with the test credentials, the first admin token made live at start from
// its file (testkit's testSecurity: the dev set-up's files, no side door), on this file's own
// database and bus prefix. No planner or build service: what needs them is refused by control itself.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitForServing } from '@stageline/grpc';
import { freePort, testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll } from 'vitest';

const main = fileURLToPath(new URL('../../../services/control/src/main.ts', import.meta.url));

/** `env`: more of control's environment (a key directory of the test's own). */
export function useControl(env: Record<string, string> = {}) {
  const isolated = useIsolatedEnvironment();
  const security = testSecurity();
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> | undefined;
  let address = '';
  let output = '';

  beforeAll(async () => {
    address = `127.0.0.1:${await freePort()}`;
    child = spawn(process.execPath, [main], {
      env: {
        ...process.env,
        ...isolated.env,
        ...security.env,
        GRPC_LISTEN: address,
        HEALTH_LISTEN: '127.0.0.1:0',
        LOG_LEVEL: process.env.CONTROL_LOG_LEVEL ?? 'warn',
        // Nothing listens there: ExplainBuild and plans are answered UNAVAILABLE by control.
        STAGELINE_PLANNER_ADDRESS: '127.0.0.1:1',
        STAGELINE_BUILD_ADDRESS: '127.0.0.1:1',
        // The web console's fixed default port would collide between files; the CLI needs none.
        STAGELINE_CONSOLE_LISTEN: 'off',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (c: Buffer) => {
      output += c.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    exited = new Promise((resolve) => child!.once('exit', resolve));
    try {
      await Promise.race([
        waitForServing(address, { security: { ca: security.ca }, timeoutMs: 30_000 }),
        exited.then((code) => {
          throw new Error(`exited with ${code} before serving`);
        }),
      ]);
    } catch (e) {
      throw new Error(`control did not start: ${(e as Error).message}\n${output.slice(-3000)}`);
    }
  }, 60_000);

  afterAll(async () => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child?.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }, 30_000);

  return {
    security,
    get address() {
      return address;
    },
    output: () => output,
  };
}
