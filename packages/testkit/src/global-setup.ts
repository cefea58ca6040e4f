// vitest globalSetup (root vitest.config.ts): runs once, before any test file, in the main process.
// Test files then find the podman socket answering and the images built instead of racing to make them.
import { randomBytes } from 'node:crypto';
import { reapSession, SESSION_LABEL } from './cleanup.ts';
import { ensureLocalImage, type LocalImageKind } from './images.ts';
import { containerToolEnv } from './paths.ts';
import { ensurePodmanSocket } from './podman.ts';
import { findPostgresBin } from './postgres-bin.ts';
import { errorMessage, run, which } from './proc.ts';
import { ensureTestSecurity } from './security.ts';

export async function setup(): Promise<void> {
  // Forked test workers inherit this, so their containers carry a label the teardown can find.
  process.env.STAGELINE_TESTKIT_SESSION ??= `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  // TLS certificates and the admin token every test's servers and clients use.
  ensureTestSecurity();
  if (which('podman') === undefined) return; // no engine: container strategies fall through to binaries
  try {
    await ensurePodmanSocket();
    if (which('buildah') === undefined) return;
    const images: LocalImageKind[] = ['nats', 'busybox'];
    // The PostgreSQL image is assembled from the local installation, when there is one.
    if ((await findPostgresBin()) !== undefined) images.push('postgres');
    await Promise.all(images.map((kind) => ensureLocalImage(kind)));
  } catch (error) {
    // Not fatal for the run: tests that need containers fail with this reason, the rest still run.
    process.stderr.write(`testkit: container setup failed: ${errorMessage(error)}\n`);
  }
}

export async function teardown(): Promise<void> {
  const session = process.env.STAGELINE_TESTKIT_SESSION;
  if (session === undefined) return;
  // vitest ends its workers without running their 'exit' hooks: servers a test never stopped are reaped here.
  reapSession(session);
  const podman = which('podman');
  if (podman === undefined) return;
  // Containers whose test process died before stop() (no Ryuk here to reap them).
  const env = containerToolEnv();
  const { stdout } = await run(podman, ['ps', '--all', '--quiet', '--filter', `label=${SESSION_LABEL}=${session}`], {
    env,
  }).catch(() => ({ stdout: '' }));
  const ids = stdout.split('\n').filter((id) => id !== '');
  if (ids.length > 0) await run(podman, ['rm', '--force', '--time', '0', ...ids], { env }).catch(() => undefined);
}
