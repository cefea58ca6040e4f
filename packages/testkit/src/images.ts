import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { withFileLock } from './lock.ts';
import { containerToolEnv, stateDir } from './paths.ts';
import { findPostgresBin } from './postgres-bin.ts';
import { run, which } from './proc.ts';

/** Images the kit can build from binaries installed on this machine (no registry is reachable). */
export type LocalImageKind = 'nats' | 'busybox' | 'postgres';

export const LOCAL_IMAGE_REPOSITORY = 'localhost/stageline-test';

/** uid/gid the PostgreSQL image runs as (postgres refuses to run as root). */
export const POSTGRES_IMAGE_UID = 999;

interface ImageRecipe {
  repository: string;
  /** Host file (symlinks followed: the image gets the content) → absolute path in the image. */
  files: { source: string; target: string }[];
  /** Binaries whose shared libraries (and loader), as `ldd` lists them, go in at the paths it names. */
  librariesOf: string[];
  symlinks: { target: string; pointsTo: string }[];
  /** Files written from text (scripts, /etc/passwd). */
  generated: { target: string; text: string; mode: number }[];
  /** Empty directories with their mode (e.g. a world-writable /tmp). */
  dirs: { target: string; mode: number }[];
  /** `buildah config` arguments; part of the hash so changing them makes a new tag. */
  config: string[];
}

// Bump when the way images are assembled changes, so old tags are not reused.
const RECIPE_VERSION = '3';

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

async function sharedLibraries(binaries: readonly string[]): Promise<string[]> {
  if (binaries.length === 0) return [];
  try {
    // One ldd for all of them: it prints a "<file>:" header per binary, which parseLdd ignores.
    const { stdout } = await run('ldd', [...binaries]);
    if (/=> not found/.test(stdout)) throw new Error(`a shared library is missing:\n${stdout}`);
    return parseLdd(stdout);
  } catch (error) {
    // glibc's ldd exits 1 for a static binary: it needs nothing.
    if (binaries.length === 1 && /not a dynamic executable/.test(String((error as Error).message))) return [];
    throw error;
  }
}

/** Exactly the libraries (and loader) the given binaries need, each once, at the paths ldd names. */
async function librariesOf(binaries: readonly string[]): Promise<{ source: string; target: string }[]> {
  const all = new Set(await sharedLibraries(binaries));
  return [...all].sort().map((library) => ({ source: library, target: library }));
}

/**
 * Lists a host directory tree as image entries under `target`: relative symlinks stay links (zoneinfo
 * is full of them), absolute ones are followed so the image never points outside itself.
 */
async function tree(
  source: string,
  target: string,
  skip: (name: string) => boolean = () => false,
): Promise<Pick<ImageRecipe, 'files' | 'symlinks'>> {
  const files: ImageRecipe['files'] = [];
  const symlinks: ImageRecipe['symlinks'] = [];
  const walk = async (from: string, to: string): Promise<void> => {
    const entries = await readdir(from, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      if (skip(entry.name)) continue;
      const hostPath = path.join(from, entry.name);
      const imagePath = path.posix.join(to, entry.name);
      if (entry.isSymbolicLink()) {
        const pointsTo = await readlink(hostPath);
        if (!path.isAbsolute(pointsTo)) {
          symlinks.push({ target: imagePath, pointsTo });
          continue;
        }
        if ((await stat(hostPath)).isDirectory()) await walk(hostPath, imagePath);
        else files.push({ source: hostPath, target: imagePath });
      } else if (entry.isDirectory()) {
        await walk(hostPath, imagePath);
      } else if (entry.isFile()) {
        files.push({ source: hostPath, target: imagePath });
      }
    }
  };
  await walk(source, target);
  return { files, symlinks };
}

function busyboxBinary(env: NodeJS.ProcessEnv): string {
  const binary = which('busybox', env, ['/bin', '/usr/bin']);
  if (binary === undefined) throw new Error('busybox is not installed (apt busybox-static): cannot build the image');
  return binary;
}

async function natsRecipe(env: NodeJS.ProcessEnv): Promise<ImageRecipe> {
  const binary = which('nats-server', env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not installed: cannot build the local NATS image');
  return {
    repository: `${LOCAL_IMAGE_REPOSITORY}/nats-server`,
    files: [{ source: binary, target: '/usr/sbin/nats-server' }],
    librariesOf: [binary],
    symlinks: [],
    generated: [],
    dirs: [],
    config: ['--entrypoint', '["/usr/sbin/nats-server"]', '--port', '4222'],
  };
}

async function busyboxRecipe(env: NodeJS.ProcessEnv): Promise<ImageRecipe> {
  const binary = busyboxBinary(env);
  if ((await sharedLibraries([binary])).length > 0) {
    throw new Error(`${binary} is not static (apt busybox-static provides one)`);
  }
  return {
    repository: `${LOCAL_IMAGE_REPOSITORY}/busybox`,
    files: [{ source: binary, target: '/bin/busybox' }],
    librariesOf: [],
    symlinks: [{ target: '/bin/sh', pointsTo: 'busybox' }],
    generated: [],
    dirs: [],
    config: ['--env', 'PATH=/bin', '--cmd', '["/bin/sh"]'],
  };
}

/**
 * PostgreSQL from this machine's installation: postgres and initdb, the server's modules (not the LLVM
 * JIT), its share directory, zoneinfo, the libraries ldd lists, busybox for the start script, and a
 * passwd entry for the unprivileged user it runs as. The start script makes a fresh trust-auth cluster.
 */
async function postgresRecipe(env: NodeJS.ProcessEnv): Promise<ImageRecipe> {
  const bin = await findPostgresBin(env);
  if (bin === undefined) throw new Error('PostgreSQL is not installed: cannot build the local PostgreSQL image');
  const config = (flag: string): Promise<string> =>
    run(path.join(bin, 'pg_config'), [flag]).then((result) => result.stdout.trim());
  const [sharedir, pkglibdir] = await Promise.all([config('--sharedir'), config('--pkglibdir')]);
  const busybox = busyboxBinary(env);
  const binaries = [path.join(bin, 'postgres'), path.join(bin, 'initdb')];
  const modules = await tree(
    pkglibdir,
    pkglibdir,
    (name) => name.startsWith('llvmjit') || name === 'bitcode' || name === 'pgxs',
  );
  const share = await tree(sharedir, sharedir, (name) => name === 'man');
  const zoneinfo = await tree('/usr/share/zoneinfo', '/usr/share/zoneinfo');
  const moduleFiles = modules.files.filter((f) => f.target.endsWith('.so'));
  const uid = POSTGRES_IMAGE_UID;
  const data = '/tmp/pgdata';
  const start = [
    '#!/bin/sh',
    'set -e',
    `${bin}/initdb -D ${data} -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions >/dev/null`,
    // Connections arrive through the port mapping from the engine's gateway, not from loopback.
    `echo "host all all 0.0.0.0/0 trust" >> ${data}/pg_hba.conf`,
    `echo "host all all ::/0 trust" >> ${data}/pg_hba.conf`,
    `exec ${bin}/postgres -D ${data} -k /tmp -c listen_addresses='*' -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c jit=off`,
    '',
  ].join('\n');
  return {
    repository: `${LOCAL_IMAGE_REPOSITORY}/postgres`,
    files: [
      ...binaries.map((binary) => ({ source: binary, target: binary })),
      { source: busybox, target: '/bin/busybox' },
      ...modules.files,
      ...share.files,
      ...zoneinfo.files,
    ],
    librariesOf: [...binaries, ...moduleFiles.map((f) => f.source)],
    symlinks: [
      { target: '/bin/sh', pointsTo: 'busybox' },
      ...modules.symlinks,
      ...share.symlinks,
      ...zoneinfo.symlinks,
    ],
    generated: [
      { target: '/usr/local/bin/stageline-postgres', text: start, mode: 0o755 },
      {
        target: '/etc/passwd',
        text: `root:x:0:0:root:/root:/bin/sh\npostgres:x:${uid}:${uid}::/tmp:/bin/sh\n`,
        mode: 0o644,
      },
      { target: '/etc/group', text: `root:x:0:\npostgres:x:${uid}:\n`, mode: 0o644 },
    ],
    dirs: [{ target: '/tmp', mode: 0o1777 }],
    config: [
      '--entrypoint',
      '["/usr/local/bin/stageline-postgres"]',
      '--user',
      `${uid}:${uid}`,
      '--env',
      'PATH=/bin',
      '--env',
      'TZ=UTC',
      '--port',
      '5432',
    ],
  };
}

function recipeFor(kind: LocalImageKind, env: NodeJS.ProcessEnv): Promise<ImageRecipe> {
  switch (kind) {
    case 'nats':
      return natsRecipe(env);
    case 'busybox':
      return busyboxRecipe(env);
    case 'postgres':
      return postgresRecipe(env);
  }
}

/**
 * A tag from the recipe and each input file's size and mtime (package upgrades change both), so an
 * upgraded binary gets a new image. Stats, not bytes or ldd runs, keep the check for an existing image
 * cheap (the PostgreSQL image has some 2,000 files); libraries are resolved only when building.
 */
async function recipeTag(recipe: ImageRecipe): Promise<string> {
  const hash = createHash('sha256');
  hash.update(
    JSON.stringify({
      version: RECIPE_VERSION,
      librariesOf: recipe.librariesOf,
      symlinks: recipe.symlinks,
      generated: recipe.generated,
      dirs: recipe.dirs,
      config: recipe.config,
    }),
  );
  for (const file of recipe.files) {
    const info = await stat(file.source);
    hash.update(`${file.source}\0${file.target}\0${info.size}\0${info.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

async function imageExists(image: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const podman = which('podman', env);
  try {
    if (podman !== undefined) await run(podman, ['image', 'exists', image], { env: containerToolEnv(env) });
    // buildah shares the image store as root; `inspect` fails for a missing image.
    else await run('buildah', ['inspect', '--type', 'image', image], { env: containerToolEnv(env) });
    return true;
  } catch {
    return false;
  }
}

async function build(recipe: ImageRecipe, image: string, buildah: string, env: NodeJS.ProcessEnv): Promise<void> {
  const toolEnv = containerToolEnv(env);
  // Stage the root filesystem once, so the image has one layer and symlinks stay symlinks.
  const stage = await mkdtemp(path.join(os.tmpdir(), 'stageline-image-'));
  try {
    const rootfs = path.join(stage, 'rootfs');
    const place = async (target: string): Promise<string> => {
      const destination = path.join(rootfs, target);
      await mkdir(path.dirname(destination), { recursive: true });
      return destination;
    };
    for (const dir of recipe.dirs) {
      const destination = await place(dir.target);
      await mkdir(destination, { recursive: true });
      await chmod(destination, dir.mode);
    }
    const files = [...recipe.files, ...(await librariesOf(recipe.librariesOf))];
    for (const file of files) await copyFile(file.source, await place(file.target));
    for (const link of recipe.symlinks) await symlink(link.pointsTo, await place(link.target));
    for (const file of recipe.generated) {
      const destination = await place(file.target);
      await writeFile(destination, file.text);
      await chmod(destination, file.mode);
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
 * Returns the name of a locally built test image, building it with buildah (FROM scratch, files
 * copied from this machine, nothing run) unless the image store already has it. Nothing is pulled.
 * - 'nats': /usr/sbin/nats-server plus exactly the libraries and loader `ldd` lists;
 *   `localhost/stageline-test/nats-server:<hash>`, entrypoint nats-server, port 4222.
 * - 'busybox': /bin/busybox (static) and /bin/sh → busybox; `localhost/stageline-test/busybox:<hash>`.
 * - 'postgres': this machine's PostgreSQL server, starting a fresh trust-auth cluster on 5432;
 *   `localhost/stageline-test/postgres:<hash>`.
 * The tag hashes the recipe and every file's bytes: upgrading a package makes a new image.
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
