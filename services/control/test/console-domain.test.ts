// The console's pure rules: which methods a role is shown (METHOD_ROLES, as gRPC enforces it), the
// session cookie, and when a browser request may change something.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { METHOD_ROLES, ROLES } from '../src/domain/access.ts';
import {
  allowedMethods,
  CSRF_HEADER,
  csrfRefusal,
  SESSION_COOKIE,
  sessionCookie,
  sessionIdOf,
} from '../src/domain/console.ts';

const every = Object.entries(METHOD_ROLES).flatMap(([service, methods]) =>
  Object.entries(methods).map(([method, role]) => ({ name: `${service.split('.').at(-1)}/${method}`, role })),
);

describe('allowedMethods', () => {
  it('is exactly what METHOD_ROLES lets each role call, each role a superset of the one below', () => {
    const [viewer, deployer, admin] = ROLES.map(allowedMethods);
    expect(viewer?.sort()).toEqual(
      every
        .filter((m) => m.role === 'ROLE_VIEWER')
        .map((m) => m.name)
        .sort(),
    );
    expect(admin?.sort()).toEqual(every.map((m) => m.name).sort());
    for (const m of viewer ?? []) expect(deployer).toContain(m);
    for (const m of deployer ?? []) expect(admin).toContain(m);
    expect(deployer).toContain('DeploymentService/deployEnvironment');
    expect(deployer).not.toContain('PipelineService/moveService');
  });
});

describe('the session cookie', () => {
  const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
  const other = fc.record({ name: fc.stringMatching(/^[a-z]{1,8}$/), value: fc.stringMatching(/^[A-Za-z0-9]{0,12}$/) });

  it('is read back from any Cookie header that carries it, among other cookies', () => {
    fc.assert(
      fc.property(id, fc.array(other), fc.array(other), (sid, before, after) => {
        const header = [...before, { name: SESSION_COOKIE, value: sid }, ...after]
          .map((c) => `${c.name}=${c.value}`)
          .join('; ');
        expect(sessionIdOf(header)).toBe(sid);
      }),
    );
  });

  it('is absent when not sent', () => {
    expect(sessionIdOf(undefined)).toBeUndefined();
    expect(sessionIdOf('a=b; stageline-session=x')).toBeUndefined();
  });

  it('is HttpOnly, Secure, SameSite=Strict, host-only', () => {
    const cookie = sessionCookie('abc', 3_600_000);
    expect(cookie).toBe(`${SESSION_COOKIE}=abc; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict`);
    expect(cookie).not.toContain('Domain');
  });
});

describe('csrfRefusal', () => {
  const host = 'console.example:8443';
  const own = `https://${host}`;
  it('lets reads through from the console or without an origin, and refuses other origins', () => {
    expect(csrfRefusal({ method: 'GET', origin: undefined, host, csrf: undefined }, 's')).toBeUndefined();
    expect(csrfRefusal({ method: 'GET', origin: own, host, csrf: undefined }, 's')).toBeUndefined();
    expect(csrfRefusal({ method: 'GET', origin: 'https://evil.example', host, csrf: undefined }, 's')).toContain(
      'evil.example',
    );
  });

  it('lets a change through only with the session CSRF token', () => {
    fc.assert(
      fc.property(fc.constantFrom('POST', 'DELETE', 'PUT'), fc.string(), fc.string(), (method, sent, session) => {
        const refusal = csrfRefusal({ method, origin: own, host, csrf: sent }, session);
        expect(refusal === undefined).toBe(sent === session);
        if (refusal !== undefined) expect(refusal).toContain(CSRF_HEADER);
      }),
    );
    expect(csrfRefusal({ method: 'POST', origin: undefined, host, csrf: undefined }, 's')).toBeDefined();
  });
});
