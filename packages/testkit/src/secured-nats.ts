// The secured path of the bus, for the tests that need it (most keep resolveNats's anonymous server):
// a nats-server of the test's own, configured by the same generator as the dev stack (one user per
// identity, anonymous clients refused) for one bus prefix, provisioned as the provision identity.
import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  Bus,
  type BusCredentials,
  type BusIdentity,
  busUserFile,
  createSubjects,
  ensureBusUsers,
  type ProvisionSettings,
  provisionBus,
  writeNatsServerConfig,
} from '@stageline/bus';
import { createLogger } from '@stageline/log';
import { track } from './cleanup.ts';
import { probeTcp, sleep, which } from './proc.ts';

export interface SecuredNats {
  url: string;
  prefix: string;
  /** `<dir>/users/<identity>.json`, as set-up writes them: hand one to a service as STAGELINE_NATS_CREDENTIALS. */
  credentialsFile(identity: BusIdentity): string;
  credentials(identity: BusIdentity): BusCredentials;
  /** The environment a service needs: NATS_URL and its own STAGELINE_NATS_CREDENTIALS. */
  env(identity: BusIdentity): Record<'NATS_URL' | 'STAGELINE_NATS_CREDENTIALS', string>;
  stop(): Promise<void>;
}

export interface SecuredNatsOptions {
  prefix: string;
  /** Provision streams, consumers and buckets with these settings (default: the services' defaults); false: don't. */
  provision?: Partial<ProvisionSettings> | false;
}

export async function startSecuredNats(options: SecuredNatsOptions): Promise<SecuredNats> {
  const binary = which('nats-server', process.env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not on PATH (bash deploy/dev/setup.sh installs it)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-secured-nats-'));
  const usersDir = path.join(dir, 'users');
  const users = await ensureBusUsers(usersDir);
  const config = path.join(dir, 'nats.conf');
  await writeNatsServerConfig(config, {
    subjects: createSubjects(options.prefix),
    users,
    host: '127.0.0.1',
    port: -1,
    storeDir: path.join(dir, 'store'),
    portsFileDir: dir,
  });
  const logPath = path.join(dir, 'nats-server.log');
  const log = await open(logPath, 'a');
  const child = spawn(binary, ['-c', config], { stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  child.unref();
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? code}`;
      resolve();
    });
    child.once('error', (error) => {
      exited = error.message;
      resolve();
    });
  });
  const forget = child.pid === undefined ? () => {} : track({ kind: 'process', pid: child.pid, dir });
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      forget();
      if (exited === undefined) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exit;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const deadline = Date.now() + 15_000;
  let url: string | undefined;
  for (;;) {
    if (exited === undefined && child.pid !== undefined) {
      try {
        const ports = JSON.parse(await readFile(path.join(dir, `nats-server_${child.pid}.ports`), 'utf8')) as {
          nats?: string[];
        };
        url = ports.nats?.[0];
      } catch {
        // not written yet
      }
      const greeting = url === undefined ? undefined : await probeTcp('127.0.0.1', Number(new URL(url).port), 500);
      if (url !== undefined && greeting?.startsWith('INFO ')) break;
    }
    if (exited !== undefined || Date.now() > deadline) {
      const output = await readFile(logPath, 'utf8').catch(() => '');
      await stop();
      throw new Error(`secured nats-server did not start (${exited ?? 'timeout'}): ${output.trim()}`);
    }
    await sleep(25);
  }
  const serverUrl = url;
  const credentialsFile = (identity: BusIdentity) => busUserFile(usersDir, identity);

  if (options.provision !== false) {
    const bus = await Bus.connect({
      url: serverUrl,
      prefix: options.prefix,
      name: 'testkit-provision',
      log: createLogger({ service: 'testkit', level: 'silent' }),
      credentialsFile: credentialsFile('provision'),
      provisioned: false,
    });
    try {
      await provisionBus(bus, options.provision ?? {});
    } catch (e) {
      await stop();
      throw e;
    } finally {
      await bus.close();
    }
  }

  return {
    url: serverUrl,
    prefix: options.prefix,
    credentialsFile,
    credentials: (identity) => users[identity],
    env: (identity) => ({ NATS_URL: serverUrl, STAGELINE_NATS_CREDENTIALS: credentialsFile(identity) }),
    stop,
  };
}
