// The files of an authenticated bus, as set-up (deploy/dev/nats.ts) and the test kit write them:
// `<dir>/users/<identity>.json` (`{"user", "password"}`, 0600, made once and kept) and
// `<dir>/nats.conf` (0600, remade every time from the users and the prefix).
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BUS_IDENTITIES, type BusCredentials, type BusIdentity, readBusCredentials } from './auth.ts';
import { type NatsServerConfigOptions, natsServerConfig } from './nats-config.ts';

async function writePrivate(file: string, text: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, text, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, file);
}

/** Each identity's credentials file: read when it exists, else made with a 256-bit password. */
export async function ensureBusUsers(usersDir: string): Promise<Record<BusIdentity, BusCredentials>> {
  await mkdir(usersDir, { recursive: true, mode: 0o700 });
  await chmod(usersDir, 0o700);
  const users: Partial<Record<BusIdentity, BusCredentials>> = {};
  for (const identity of BUS_IDENTITIES) {
    const file = busUserFile(usersDir, identity);
    try {
      users[identity] = await readBusCredentials(file);
      await chmod(file, 0o600);
      continue;
    } catch (e) {
      if ((e as { message?: string }).message?.endsWith(': ENOENT') !== true) throw e;
    }
    const credentials = { user: identity, password: randomBytes(32).toString('base64url') };
    await writePrivate(file, `${JSON.stringify(credentials)}\n`);
    users[identity] = credentials;
  }
  return users as Record<BusIdentity, BusCredentials>;
}

/** The cluster's route user (`<usersDir>/route.json`): read when it exists, else made like the others. */
export async function ensureRouteUser(usersDir: string): Promise<BusCredentials> {
  await mkdir(usersDir, { recursive: true, mode: 0o700 });
  const file = path.join(usersDir, 'route.json');
  try {
    return await readBusCredentials(file);
  } catch (e) {
    if ((e as { message?: string }).message?.endsWith(': ENOENT') !== true) throw e;
  }
  const credentials = { user: 'route', password: randomBytes(32).toString('base64url') };
  await writePrivate(file, `${JSON.stringify(credentials)}\n`);
  return credentials;
}

export const busUserFile = (usersDir: string, identity: BusIdentity): string => path.join(usersDir, `${identity}.json`);

/** Writes the server configuration; true when its text changed (a running server should reload). */
export async function writeNatsServerConfig(file: string, options: NatsServerConfigOptions): Promise<boolean> {
  const text = natsServerConfig(options);
  const before = await readFile(file, 'utf8').catch(() => '');
  if (before === text) return false;
  await writePrivate(file, text);
  return true;
}
