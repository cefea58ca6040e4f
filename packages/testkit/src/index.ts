// @stageline/testkit: how every Stageline test finds real servers (in the order of its README) and
// isolates itself.

export { type FaultNats, type FaultServer, type OwnPostgresOptions, startOwnNats, startOwnPostgres } from './faults.ts';
export {
  type EnsureLocalImageOptions,
  ensureLocalImage,
  LOCAL_IMAGE_REPOSITORY,
  type LocalImageKind,
} from './images.ts';
export {
  dropBusPrefix,
  type FreshDatabase,
  type FreshOptions,
  type FreshSchema,
  freshBusPrefix,
  freshDatabase,
  freshSchema,
  streamHasPrefix,
} from './isolation.ts';
export { NATS_LOCAL_PORT, resolveNats } from './nats.ts';
export {
  type NatsClusterNodeSpec,
  type NatsClusterOptions,
  type SecuredNatsCluster,
  startSecuredNatsCluster,
} from './nats-cluster.ts';
export { type EnsurePodmanSocketOptions, ensurePodmanSocket, pingDockerSocket, podmanSocketPath } from './podman.ts';
export { POSTGRES_LOCAL_PORT, resolvePostgres } from './postgres.ts';
export { freePort } from './proc.ts';
export { REGISTRY_LOCAL_PORT, registryAnswers, resolveRegistry } from './registry.ts';
export { RESOLUTION_ORDER, type ResolvedServer, type ResolveOptions, type ServerSource } from './resolve.ts';
export { type SecuredNats, type SecuredNatsOptions, startSecuredNats } from './secured-nats.ts';
export { ensureTestSecurity, type ServiceIdentity, type TestSecurity, testSecurity } from './security.ts';
export { type IsolatedEnvironment, useIsolatedEnvironment } from './vitest.ts';
