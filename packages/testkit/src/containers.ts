import { SESSION_LABEL, sessionId, track } from './cleanup.ts';
import { ensureLocalImage, type LocalImageKind } from './images.ts';
import { ensurePodmanSocket } from './podman.ts';

export interface StartedContainer {
  host: string;
  port: number;
  stop(): Promise<void>;
}

export interface ContainerSpec {
  image: LocalImageKind;
  command?: string[];
  port: number;
  /** A line the server logs once it accepts connections. */
  readyLog: RegExp;
}

/**
 * Starts a locally built image through testcontainers, on podman's Docker-compatible socket unless
 * DOCKER_HOST names another engine. Never pulls. Without an engine this throws within milliseconds
 * with testcontainers' "Could not find a working container runtime strategy".
 */
export async function startContainer(spec: ContainerSpec): Promise<StartedContainer> {
  // testcontainers reads DOCKER_HOST from process.env (once per process), so the socket is set up there.
  await ensurePodmanSocket();
  const tc = await import('testcontainers');
  await tc.getContainerRuntimeClient();
  const image = await ensureLocalImage(spec.image);
  let definition = new tc.GenericContainer(image)
    .withExposedPorts(spec.port)
    .withPullPolicy(tc.PullPolicy.neverPull())
    .withLabels({ [SESSION_LABEL]: sessionId() })
    .withWaitStrategy(tc.Wait.forLogMessage(spec.readyLog))
    .withStartupTimeout(60_000);
  if (spec.command !== undefined) definition = definition.withCommand(spec.command);
  const container = await definition.start();
  const forget = track({ kind: 'container', id: container.getId() });
  let stopped: Promise<void> | undefined;
  return {
    host: container.getHost(),
    port: container.getMappedPort(spec.port),
    stop: () => {
      stopped ??= (async () => {
        forget();
        await container.stop({ remove: true, timeout: 0 });
      })();
      return stopped;
    },
  };
}
