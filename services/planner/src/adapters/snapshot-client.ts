import * as grpc from '@grpc/grpc-js';
import { callUnary, domainErrorFromGrpc } from '@stageline/grpc';
import { snapshot } from '@stageline/proto';

/** Control's SnapshotService, as the planner needs it. */
export function snapshotClient(address: string): {
  get(environmentId: string): Promise<snapshot.GetEnvironmentSnapshotResponse>;
  close(): void;
} {
  const client = new snapshot.SnapshotServiceClient(address, grpc.credentials.createInsecure());
  return {
    async get(environmentId) {
      try {
        return await callUnary(client, 'getEnvironmentSnapshot', { environmentId }, { deadlineMs: 10_000 });
      } catch (e) {
        throw domainErrorFromGrpc(e, 'control');
      }
    },
    close: () => client.close(),
  };
}
