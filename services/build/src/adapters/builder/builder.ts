// The Builder port: turns a checked-out build context into an image in the mirror registry. buildah is
// the adapter today (buildah.ts); a BuildKit or in-cluster builder implements the same interface.

export interface BuildResources {
  cpuMillis: number;
  memoryMib: number;
}

export interface BuildArg {
  name: string;
  value: string;
  secret: boolean;
}

export interface BuildSpec {
  /** The build context (a directory). */
  contextDir: string;
  /** The Dockerfile to build (its content is what the cache key hashed). */
  dockerfile: string;
  /** Stage to build; empty: the last one. */
  target: string;
  /** Only ARGs the Dockerfile declares and the service's environment sets. */
  args: readonly BuildArg[];
  /** Destination in the mirror, with its tag: `<mirror>/<project>/<repo-slug>:build-<key>`. */
  image: string;
  resources: BuildResources;
  /** Aborted on cancel or timeout: the builder stops and throws BuildFailure('aborted'). */
  signal: AbortSignal;
  /** Every line of the builder's output, as it comes. */
  onLine(line: string): void;
}

export interface BuiltImage {
  /** The pushed image, `<mirror>/<repository>:<tag>`. */
  image: string;
  /** Manifest digest in the mirror. */
  digest: string;
}

/**
 * failed: the Dockerfile's build failed (a RUN step exited non-zero, a COPY source is missing…);
 * memory: a step was killed for exceeding the memory limit; push: the mirror refused the image;
 * aborted: stopped through the signal; unavailable: the builder itself cannot run.
 */
export type BuildFailureKind = 'failed' | 'memory' | 'push' | 'aborted' | 'unavailable';

export class BuildFailure extends Error {
  readonly kind: BuildFailureKind;
  constructor(kind: BuildFailureKind, message: string) {
    super(message);
    this.name = 'BuildFailure';
    this.kind = kind;
  }
}

export interface Builder {
  /** For logs: e.g. "buildah 1.28.2". */
  readonly name: string;
  /** Builds and pushes; throws BuildFailure. */
  build(spec: BuildSpec): Promise<BuiltImage>;
}
