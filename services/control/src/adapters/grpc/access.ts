import type * as grpc from '@grpc/grpc-js';
import { DomainError, notFound } from '@stageline/errors';
import { type GrpcServiceRegistration, principalOf, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { control } from '@stageline/proto';
import type { AccessApp } from '../../app/access-app.ts';
import { type Caller, METHOD_ROLES, seesProject, visibleProjects } from '../../domain/access.ts';

// AccessService, and the project scope every public handler applies to its caller.

/** The caller of a call the server authorized (grpc's principal is a Caller, structurally). */
export const callerOf = (call: object): Caller => principalOf(call) as Caller;

/** Checks environments against the caller's projects; one per control process. */
export class Scope {
  readonly #projectOf: (environmentId: string) => Promise<string | undefined>;

  constructor(projectOf: (environmentId: string) => Promise<string | undefined>) {
    this.#projectOf = projectOf;
  }

  /** NOT_FOUND (as if absent) when the environment belongs to a project the caller may not see. */
  async environment(call: object, environmentId: string, field = 'environment_id'): Promise<Caller> {
    const caller = callerOf(call);
    if (caller.kind === 'token' && caller.projects.length > 0 && environmentId !== '') {
      const project = await this.#projectOf(environmentId);
      if (project === undefined || !seesProject(caller, project)) throw notFound('environment', environmentId, field);
    }
    return caller;
  }

  /** PERMISSION_DENIED for a project outside the caller's (creating an environment there, say). */
  project(call: object, project: string, field = 'project'): Caller {
    const caller = callerOf(call);
    if (!seesProject(caller, project)) {
      throw new DomainError('PERMISSION_DENIED', `the token may not act on project ${JSON.stringify(project)}`, {
        field,
      });
    }
    return caller;
  }

  /** The projects a list may show (undefined: all). */
  visible(call: object, asked: string): readonly string[] | undefined {
    return visibleProjects(callerOf(call), asked);
  }
}

/** `rotateSecretKey`: a new active secret key, control's values sealed again under it (service.ts). */
export function accessService(
  app: AccessApp,
  log: Logger,
  rotateSecretKey: () => Promise<control.RotateSecretKeyResponse>,
): GrpcServiceRegistration {
  const implementation: control.AccessServiceServer = {
    createToken: unary(log, (req, call) => app.createToken(req, callerOf(call))),
    listTokens: unary(log, () => app.listTokens()),
    revokeToken: unary(log, (req) => app.revokeToken(req)),
    rotateSecretKey: unary(log, () => rotateSecretKey()),
  };
  return {
    definition: control.AccessServiceService,
    implementation: implementation as unknown as grpc.UntypedServiceImplementation,
    access: { roles: METHOD_ROLES['stageline.control.v1.AccessService'] ?? {} },
  };
}
