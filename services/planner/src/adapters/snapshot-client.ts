import { type ClientSecurity, callUnary, connect, domainErrorFromGrpc } from '@stageline/grpc';
import { snapshot } from '@stageline/proto';

/** Control's SnapshotService, as the planner needs it. */
export function snapshotClient(
  address: string,
  security: ClientSecurity,
): {
  get(environmentId: string): Promise<snapshot.GetEnvironmentSnapshotResponse>;
  close(): void;
} {
  const client = connect(snapshot.SnapshotServiceClient, address, security);
  return {
    async get(environmentId) {
      try {
        return await callUnary(
          client,
          'getEnvironmentSnapshot',
          { environmentId },
          { deadlineMs: 20_000, retry: true },
        );
      } catch (e) {
        throw domainErrorFromGrpc(e, 'control');
      }
    },
    close: () => client.close(),
  };
}
