import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseLdd } from '../src/images.ts';
import { ensureLocalImage } from '../src/index.ts';
import { containerToolEnv } from '../src/paths.ts';
import { which } from '../src/proc.ts';

const exec = promisify(execFile);
const podman = which('podman');

const buildah = which('buildah');

async function podmanRun(image: string, args: string[]): Promise<string> {
  if (podman === undefined) throw new Error('podman is not installed');
  const { stdout } = await exec(podman, ['run', '--rm', '--network', 'none', image, ...args], {
    env: containerToolEnv(),
  });
  return stdout;
}

/** What a machine without podman can still check: buildah built it (or there is no buildah to build with). */
async function checkWithoutPodman(kind: 'nats' | 'busybox', entrypoint: string): Promise<void> {
  if (buildah === undefined) {
    await expect(ensureLocalImage(kind)).rejects.toThrow(/buildah is not installed/);
    return;
  }
  const image = await ensureLocalImage(kind);
  const { stdout } = await exec(buildah, ['inspect', '--type', 'image', '--format', '{{.OCIv1.Config}}', image], {
    env: containerToolEnv(),
  });
  expect(stdout).toContain(entrypoint);
}

describe('parseLdd', () => {
  it('keeps the libraries and the loader, not the vdso', () => {
    const output = [
      '\tlinux-vdso.so.1 (0x00007ffd0a5f2000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f9b1c000000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f9b1c3f0000)',
    ].join('\n');
    expect(parseLdd(output)).toEqual(['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
    expect(parseLdd('\tnot a dynamic executable\n')).toEqual([]);
  });
});

// Built from this machine's binaries with buildah; podman runs them.
describe('ensureLocalImage', () => {
  it('builds a NATS image that runs the host nats-server, and reuses it', async () => {
    if (podman === undefined) return checkWithoutPodman('nats', '/usr/sbin/nats-server');
    const image = await ensureLocalImage('nats');
    expect(image).toMatch(/^localhost\/stageline-test\/nats-server:[0-9a-f]{16}$/);
    expect(await ensureLocalImage('nats')).toBe(image);
    const { stdout: hostVersion } = await exec(which('nats-server', process.env, ['/usr/sbin']) ?? 'nats-server', [
      '--version',
    ]);
    expect((await podmanRun(image, ['--version'])).trim()).toBe(hostVersion.trim());
  });

  it('builds a busybox base image with /bin/sh', async () => {
    if (podman === undefined) return checkWithoutPodman('busybox', '/bin/sh');
    const image = await ensureLocalImage('busybox');
    expect(image).toMatch(/^localhost\/stageline-test\/busybox:[0-9a-f]{16}$/);
    expect(await podmanRun(image, ['sh', '-c', 'echo "$((6 * 7))" && readlink /bin/sh'])).toBe('42\nbusybox\n');
  });
});
