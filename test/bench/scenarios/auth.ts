// Scenario 7 — what authentication costs a unary call: the same echo method served three ways in this
// process, called one at a time over one channel. The floor is grpc-js in plaintext without any check;
// then TLS with a service identity (mutual TLS, as services call each other); then TLS with a bearer
// token checked against a verifier that answers from memory (as control's 5 s token cache does once
// warm). p50 and p99 per call; the difference to the floor is the cost of security.
import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, describePrincipal, principalOf, startGrpcServer, unary } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { control, planner } from '@stageline/proto';
import { testSecurity } from '@stageline/testkit';
import type { ScenarioResult } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { quantile, summarize } from '../lib/stats.ts';

const log = createLogger({ service: 'bench-auth', level: 'silent' });
const TOKEN = 'bench-token';

async function measure(client: planner.PlannerServiceClient, calls: number): Promise<number[]> {
  const request = { deploymentId: 'x' };
  for (let i = 0; i < Math.min(200, calls); i++) await callUnary(client, 'getDeployment', request);
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    await callUnary(client, 'getDeployment', request);
    out.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return out;
}

export const auth: Scenario = {
  name: 'auth',
  title: '7. Authentication per unary call (in-process echo server)',
  async run(ctx): Promise<ScenarioResult> {
    const calls = Math.max(500, Math.round(3000 * ctx.scale));
    const reps = ctx.reps ?? 3;
    const security = testSecurity();
    const echo = (secured: boolean) => ({
      definition: planner.PlannerServiceService,
      implementation: {
        getDeployment: unary(log, async (_req: unknown, call: object) => ({
          deployment: control.Deployment.fromPartial({ id: secured ? describePrincipal(principalOf(call)) : 'plain' }),
        })),
      } as grpc.UntypedServiceImplementation,
    });

    // The floor: plaintext, no check at all (what every server was before TLS).
    const plain = new grpc.Server();
    plain.addService(echo(false).definition, echo(false).implementation);
    const plainPort = await new Promise<number>((resolve, reject) =>
      plain.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const secured = await startGrpcServer({
      address: '127.0.0.1:0',
      services: [{ ...echo(true), access: { services: ['control'], roles: { getDeployment: 'ROLE_VIEWER' } } }],
      tls: security.files('planner'),
      verifyToken: async (token) =>
        token === TOKEN
          ? { kind: 'token', tokenId: 'b', tokenName: 'bench', role: 'ROLE_VIEWER', projects: [] }
          : undefined,
      log,
    });
    const variants = [
      {
        name: 'plaintext, no check (floor)',
        client: new planner.PlannerServiceClient(`127.0.0.1:${plainPort}`, grpc.credentials.createInsecure()),
      },
      {
        name: 'TLS + service identity (mTLS)',
        client: connect(planner.PlannerServiceClient, secured.address, security.service('control')),
      },
      {
        name: 'TLS + bearer token + role',
        client: connect(planner.PlannerServiceClient, secured.address, { ca: security.ca, token: TOKEN }),
      },
    ];
    try {
      const repetitions: Record<string, { p50: number; p99: number }>[] = [];
      for (let r = 0; r < reps; r++) {
        const rep: Record<string, { p50: number; p99: number }> = {};
        for (const v of variants) {
          const us = await measure(v.client, calls);
          rep[v.name] = { p50: quantile(us, 0.5), p99: quantile(us, 0.99) };
        }
        repetitions.push(rep);
        ctx.log(
          `auth rep ${r + 1}/${reps}: ${variants.map((v) => `${v.name} p50 ${rep[v.name]!.p50.toFixed(0)} µs`).join(', ')}`,
        );
      }
      const fig = (name: string, q: 'p50' | 'p99') => summarize(repetitions.map((rep) => rep[name]![q]));
      const floor = variants[0]!.name;
      const rows = variants.map((v) => {
        const p50 = fig(v.name, 'p50');
        const p99 = fig(v.name, 'p99');
        return [
          v.name,
          p50.median,
          p99.median,
          v.name === floor ? '' : `+${(p50.median - fig(floor, 'p50').median).toFixed(0)} µs`,
        ];
      });
      return {
        scenario: 'auth',
        title: this.title,
        parameters: { reps, callsPerVariant: calls, concurrency: 1 },
        figures: Object.fromEntries(
          variants.flatMap((v) => [
            [`${v.name} p50 µs`, fig(v.name, 'p50')],
            [`${v.name} p99 µs`, fig(v.name, 'p99')],
          ]),
        ),
        repetitions,
        tables: [
          {
            title: `${this.title}, ${calls} sequential calls × ${reps} repetitions (medians)`,
            columns: ['', 'p50 µs', 'p99 µs', 'p50 over the floor'],
            rows,
            notes: [
              'the token verifier answers from memory, as control does within its 5 s cache; a cache miss adds one indexed read',
            ],
          },
        ],
      };
    } finally {
      for (const v of variants) v.client.close();
      plain.forceShutdown();
      await secured.shutdown();
    }
  },
};
