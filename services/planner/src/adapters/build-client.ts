import { type ClientSecurity, callUnary, connect, domainErrorFromGrpc } from '@stageline/grpc';
import { build, type bus } from '@stageline/proto';

/** The build service's dry run (BuildService/PredictBuilds), as a plan needs it. */
export function buildPredictor(
  address: string,
  security: ClientSecurity,
): {
  predict(jobs: bus.BuildJob[]): Promise<build.BuildPrediction[]>;
  close(): void;
} {
  const client = connect(build.BuildServiceClient, address, security);
  return {
    async predict(jobs) {
      try {
        // The build service gives up on a job after 60 s itself; this leaves room for its answer.
        const { predictions } = await callUnary(
          client,
          'predictBuilds',
          { jobs },
          { deadlineMs: 70_000, retry: { withinMs: 10_000 } },
        );
        return predictions;
      } catch (e) {
        throw domainErrorFromGrpc(e, 'build');
      }
    },
    close: () => client.close(),
  };
}
