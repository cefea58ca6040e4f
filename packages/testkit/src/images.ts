import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { withFileLock } from './lock.ts';
import { containerToolEnv, stateDir } from './paths.ts';
import { run, which } from './proc.ts';

/** Images the kit can build from binaries installed on this machine (no registry is reachable). */
export type LocalImageKind = 'nats' | 'busybox';

export const LOCAL_IMAGE_REPOSITORY = 'localhost/stageline-test';

interface ImageFile {
  /** Absolute path on this machine (symlinks are followed: the image gets the file's content). */
  source: string;
  /** Absolute path inside the image. */
  target: string;
}

interface ImageRecipe {
  repository: string;
  files: ImageFile[];
  symlinks: { target: string; pointsTo: string }[];
  /** `buildah config` arguments; part of the hash so changing them makes a new tag. */
  config: string[];
}

// Bump when the way images are assembled changes, so old tags are not reused.
const RECIPE_VERSION = '1';

/** Parses `ldd` output into the absolute paths of the libraries and the dynamic loader it names. */
export function parseLdd(output: string): string[] {
  const paths: string[] = [];
  for (const line of output.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)";
    // linux-vdso has no file and "not a dynamic executable" names none.
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1] !== undefined) paths.push(match[1]);
  }
  return paths;
}

async function sharedLibraries(binary: string): Promise<string[]> {
  try {
    const { stdout } = await run('ldd', [binary]);
    return parseLdd(stdout);
  } catch (error) {
    // glibc's ldd exits 1 for a static binary: it needs nothing.
    if (/not a dynamic executable/.test(String((error as Error).message))) return [];
    throw error;
  }
}

async function recipeFor(kind: LocalImageKind, env: NodeJS.ProcessEnv): Promise<ImageRecipe> {
  switch (kind) {
    case 'nats': {
      const binary = which('nats-server', env, ['/usr/sbin', '/usr/local/sbin']);
      if (binary === undefined) throw new Error('nats-server is not installed: cannot build the local NATS image');
      const libraries = await sharedLibraries(binary);
      return {
        repository: `${LOCAL_IMAGE_REPOSITORY}/nats-server`,
        files: [
          { source: binary, target: '/usr/sbin/nats-server' },
          ...libraries.map((library) => ({ source: library, target: library })),
        ],
        symlinks: [],
        config: ['--entrypoint', '["/usr/sbin/nats-server"]', '--port', '4222'],
      };
    }
    case 'busybox': {
      const binary = which('busybox', env, ['/bin', '/usr/bin']);
      if (binary === undefined)
        throw new Error('busybox is not installed (apt busybox-static): cannot build the image');
      const libraries = await sharedLibraries(binary);
      if (libraries.length > 0) throw new Error(`${binary} is not static (apt busybox-static provides one)`);
      return {
        repository: `${LOCAL_IMAGE_REPOSITORY}/busybox`,
        files: [{ source: binary, target: '/bin/busybox' }],
        symlinks: [{ target: '/bin/sh', pointsTo: 'busybox' }],
        config: ['--env', 'PATH=/bin', '--cmd', '["/bin/sh"]'],
      };
    }
  }
}

/** A tag from the recipe and the bytes of every file, so an upgraded binary gets a new image. */
async function recipeTag(recipe: ImageRecipe): Promise<string> {
  const hash = createHash('sha256');
  hash.update(
    JSON.stringify({
      version: RECIPE_VERSION,
      targets: recipe.files.map((f) => f.target),
      symlinks: recipe.symlinks,
      config: recipe.config,
    }),
  );
  for (const file of recipe.files) hash.update(await readFile(file.source));
  return hash.digest('hex').slice(0, 16);
}

async function imageExists(image: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const podman = which('podman', env);
  if (podman !== undefined) {
    try {
      await run(podman, ['image', 'exists', image], { env: containerToolEnv(env) });
      return true;
    } catch {
      return false;
    }
  }
  // buildah shares the image store as root; `inspect` fails for a missing image.
  try {
    await run('buildah', ['inspect', '--type', 'image', image], { env: containerToolEnv(env) });
    return true;
  } catch {
    return false;
  }
}

async function build(recipe: ImageRecipe, image: string, buildah: string, env: NodeJS.ProcessEnv): Promise<void> {
  const toolEnv = containerToolEnv(env);
  // Stage the root filesystem once so the image has one layer and symlinks stay symlinks.
  const stage = await mkdtemp(path.join(os.tmpdir(), 'stageline-image-'));
  try {
    const rootfs = path.join(stage, 'rootfs');
    for (const file of recipe.files) {
      const destination = path.join(rootfs, file.target);
      await mkdir(path.dirname(destination), { recursive: true });
      await copyFile(file.source, destination);
    }
    for (const link of recipe.symlinks) {
      const destination = path.join(rootfs, link.target);
      await mkdir(path.dirname(destination), { recursive: true });
      await symlink(link.pointsTo, destination);
    }
    const { stdout } = await run(buildah, ['from', '--quiet', 'scratch'], { env: toolEnv });
    const container = stdout.trim();
    try {
      await run(buildah, ['copy', '--quiet', container, `${rootfs}/`, '/'], { env: toolEnv });
      await run(buildah, ['config', ...recipe.config, '--label', 'stageline.testkit=1', container], { env: toolEnv });
      await run(buildah, ['commit', '--quiet', '--rm', container, image], { env: toolEnv });
    } catch (error) {
      await run(buildah, ['rm', container], { env: toolEnv }).catch(() => undefined);
      throw error;
    }
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

const ensured = new Map<LocalImageKind, Promise<string>>();

export interface EnsureLocalImageOptions {
  env?: NodeJS.ProcessEnv;
}

/**
 * Returns the name of a locally built test image, building it with buildah (FROM scratch, COPY only)
 * unless podman's store already has it. Nothing is ever pulled.
 * - 'nats': /usr/sbin/nats-server plus exactly the libraries and loader `ldd` lists;
 *   `localhost/stageline-test/nats-server:<hash>`, entrypoint nats-server, port 4222.
 * - 'busybox': /bin/busybox (static) and /bin/sh → busybox; `localhost/stageline-test/busybox:<hash>`.
 */
export function ensureLocalImage(kind: LocalImageKind, options: EnsureLocalImageOptions = {}): Promise<string> {
  const cached = ensured.get(kind);
  if (cached !== undefined) return cached;
  const env = options.env ?? process.env;
  const pending = (async () => {
    const recipe = await recipeFor(kind, env);
    const image = `${recipe.repository}:${await recipeTag(recipe)}`;
    if (await imageExists(image, env)) return image;
    const buildah = which('buildah', env);
    if (buildah === undefined) throw new Error(`buildah is not installed: cannot build ${image}`);
    await withFileLock(stateDir(env), `image-${kind}`, async () => {
      if (!(await imageExists(image, env))) await build(recipe, image, buildah, env);
    });
    return image;
  })();
  ensured.set(kind, pending);
  void pending.catch(() => ensured.delete(kind));
  return pending;
}
