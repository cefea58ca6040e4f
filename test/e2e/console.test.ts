// The web console in a real browser (Debian's Chromium, driven by playwright-core; nothing is
// downloaded) against the real stack: sign in, skip a service by dragging it into Skipped and see
// a deploy skip it, move a service between stages with the keyboard, deploy and watch the run live
// to SUCCEEDED, read its logs and the history; a viewer sees no action and the server refuses one; a
// failed run is resumed from its page.
// Screenshots of every page go to test/e2e/screenshots/console/ (git-ignored).
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildConsole } from '@stageline/console/build';
import { callUnary, connect } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type IsolatedBrowser, launchChromium } from './browser/console-browser.ts';
import { createEnvironment, EXAMPLE_IMAGE, useStack, watchToEnd } from './stack.ts';

const stack = useStack();
const SHOTS = fileURLToPath(new URL('./screenshots/console/', import.meta.url));
const [REPO = '', TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);

let chromium: IsolatedBrowser;
let page: Page;
/** Every URL the pages asked for: nothing may leave the console's origin. */
const requested: string[] = [];
/** What the pages reported going wrong: shown with a failing test. */
const problems: string[] = [];
let envId = '';
const ids: Record<string, string> = {};
const stageIds: string[] = [];

async function newPage(): Promise<Page> {
  // The stack's certificate is signed by the test CA, which this browser profile does not hold.
  const context = await chromium.browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1440, height: 900 },
  });
  const p = await context.newPage();
  p.on('request', (r) => requested.push(r.url()));
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  return p;
}

/**
 * Opens a page of the console until it renders. Chromium aborts requests in flight, loopback too,
 * whenever the machine's interfaces change (ERR_NETWORK_CHANGED), and the tests running beside this
 * one start containers all the time: a load that met one is tried again.
 */
async function open(p: Page, url: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      await p.goto(url);
      await p.locator('#app > *').first().waitFor({ timeout: 10_000 });
      return;
    } catch (e) {
      if (attempt >= 5) throw e;
    }
  }
}

async function signIn(p: Page, token: string) {
  await open(p, stack.consoleUrl);
  await p.getByLabel('API token').fill(token);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.getByRole('heading', { name: 'Environments' }).waitFor();
}

const shot = (p: Page, name: string) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const card = (p: Page, name: string) => p.locator(`li.card[data-service="${name}"]`);
const column = (p: Page, name: string) => p.locator(`section.column[data-column="${name}"]`);

async function service(): Promise<Record<string, control.Service>> {
  const { services } = await callUnary(stack.environments, 'listServices', { environmentId: envId });
  return Object.fromEntries(services.map((s) => [s.name, s]));
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  if (!existsSync(join(fileURLToPath(new URL('../../packages/console/dist/', import.meta.url)), 'index.html'))) {
    await buildConsole();
  }
  const created = await createEnvironment(stack, 'console');
  envId = created.environment!.id;
  const { pipeline } = await callUnary(
    stack.pipelines,
    'createStage',
    control.CreateStageRequest.fromPartial({ environmentId: envId, name: 'frontend', description: 'what users reach' }),
  );
  stageIds.push(...pipeline!.stages.map((s) => s.id));
  const container = stageIds[2]!; // DEFAULT CONTAINER
  for (const name of ['api', 'web', 'worker']) {
    const { service: added } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: container,
          source: { $case: 'container', value: { image: REPO, tag: TAG, ports: [] } },
          readinessTimeoutSeconds: 60,
        },
      }),
    );
    ids[name] = added!.id;
  }
  chromium = await launchChromium(stack.consoleUrl);
  page = await newPage();
}, 120_000);

afterEach(async ({ task }) => {
  if (task.result?.state !== 'fail' || page === undefined) return;
  await shot(page, `failed-${task.name.slice(0, 40).replace(/\W+/g, '-')}`).catch(() => {});
  console.error(`${task.name}: the page at ${page.url()} reported:\n${problems.join('\n')}`);
});

afterAll(async () => {
  await chromium?.close();
});

describe('the web console in Chromium', () => {
  it('signs in with a token and lists environments by project with their status', async () => {
    await open(page, stack.consoleUrl);
    await shot(page, '01-sign-in');
    await page.getByLabel('API token').fill('stl_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('UNAUTHENTICATED');
    await signIn(page, stack.security.adminToken);
    const row = page.locator('.env-list li', { hasText: 'e2e/console' });
    await row.waitFor();
    await expect(page.getByRole('heading', { name: 'e2e', exact: true }).count()).resolves.toBe(1);
    await expect(row.textContent()).resolves.toContain('NEVER DEPLOYED');
    // The session cookie is out of the page's reach.
    await expect(page.evaluate('document.cookie')).resolves.toBe('');
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    await shot(page, '02-environments');
  });

  it('skips a service by dragging it into Skipped, and moves one between stages with the keyboard', async () => {
    await page.locator('.env-list a', { hasText: 'e2e/console' }).click();
    await column(page, 'Skipped').waitFor();
    const order = await page.locator('section.column h2').allTextContents();
    expect(order).toEqual([
      'DEFAULT DATABASE',
      'DEFAULT JOB',
      'DEFAULT CONTAINER',
      'DEFAULT APPLICATION',
      'frontend',
      'Skipped',
    ]);

    await card(page, 'worker').dragTo(column(page, 'Skipped'));
    await column(page, 'Skipped').locator('li.card[data-service="worker"]').waitFor();
    expect((await service()).worker?.skipped).toBe(true);

    // Keyboard: Space picks "web" up, → twice reaches "frontend", Space drops it there.
    const handle = page.getByRole('button', { name: 'move web' });
    await handle.focus();
    await page.keyboard.press('Space');
    await expect(handle.getAttribute('aria-pressed')).resolves.toBe('true');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Space');
    await column(page, 'frontend').locator('li.card[data-service="web"]').waitFor();
    expect((await service()).web?.stageId).toBe(stageIds[4]);

    // A refusal from the server is shown with its field.
    await page.getByLabel('New stage').fill('frontend');
    await page.getByRole('button', { name: 'Add stage' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('ALREADY_EXISTS');
    await shot(page, '03-pipeline');
  });

  it('plans, deploys and follows the run live to SUCCEEDED, the skipped service untouched', async () => {
    await page.getByRole('button', { name: 'Plan' }).click();
    await page.getByRole('region', { name: 'plan' }).waitFor();
    await expect(page.getByRole('region', { name: 'plan' }).textContent()).resolves.toContain('MIRROR IMAGE');
    await shot(page, '04-plan');
    await page
      .getByRole('toolbar', { name: 'environment actions' })
      .getByRole('button', { name: 'Deploy', exact: true })
      .click();
    await page.waitForURL(/#\/run\//);
    const runId = page.url().split('#/run/')[1]!;
    // Every state the page shows while the run goes: it must change in place, not only at the end.
    const seen = new Set<string>();
    const status = page.getByTestId('run-status');
    await expect
      .poll(
        async () => {
          for (const s of await page.locator('tr[data-service] [data-state]').allTextContents()) seen.add(s);
          for (const s of await page
            .locator('tr[data-service] [data-step]')
            .evaluateAll((els) => els.map((e) => e.getAttribute('data-step') ?? ''))) {
            seen.add(`step:${s}`);
          }
          return status.textContent();
        },
        { timeout: 150_000, interval: 200 },
      )
      .toBe('SUCCEEDED');
    expect([...seen].some((s) => s !== 'DEPLOYED' && s !== 'SKIPPED' && !s.startsWith('step:'))).toBe(true);
    expect(seen).toContain('step:DEPLOYMENT');
    await expect(page.locator('tr[data-service="worker"] [data-state]').textContent()).resolves.toBe('SKIPPED');
    await expect(page.locator('tr[data-service="web"] [data-state]').textContent()).resolves.toBe('DEPLOYED');
    const { deployment } = await callUnary(stack.deployments, 'getDeployment', { deploymentId: runId });
    const byName = Object.fromEntries(deployment!.services.map((s) => [s.name, s.status]));
    expect(byName.worker).toBe(control.ServiceState.SERVICE_STATE_SKIPPED);
    expect(byName.api).toBe(control.ServiceState.SERVICE_STATE_DEPLOYED);
    await shot(page, '05-run');

    await page.getByRole('link', { name: 'Logs' }).click();
    await expect.poll(() => page.getByTestId('log-lines').textContent(), { timeout: 30_000 }).toMatch(/DEPLOYMENT/);
    await page.getByLabel('Service').selectOption({ label: 'web' });
    await expect.poll(() => page.getByTestId('log-lines').textContent(), { timeout: 30_000 }).toMatch(/\S/);
    await shot(page, '06-logs');

    await open(page, `${stack.consoleUrl}/#/env/${envId}/history`);
    const first = page.locator('table.history tbody tr').first();
    await expect.poll(() => first.textContent()).toContain('SUCCEEDED');
    await expect(first.getByRole('button', { name: 'Roll back to this' }).count()).resolves.toBe(1);
    await shot(page, '07-history');

    // Each card says what runs now (GetRuntimeStatus) beside the last run's outcome; the skipped one runs nothing.
    await open(page, `${stack.consoleUrl}/#/env/${envId}`);
    await expect
      .poll(() => card(page, 'web').locator('[data-running]').textContent(), { timeout: 30_000 })
      .toBe('RUNNING');
    await expect(card(page, 'web').textContent()).resolves.toContain('1/1 ready');
    await expect(card(page, 'worker').locator('[data-running]').count()).resolves.toBe(0);
  });

  it('shows a viewer no action, and the server refuses one anyway', async () => {
    const address = stack.procs.find((p) => p.name === 'control')!.address;
    const access = connect(control.AccessServiceClient, address, stack.security.user());
    const { token } = await callUnary(
      access,
      'createToken',
      control.CreateTokenRequest.fromPartial({ name: 'console-viewer', role: control.Role.ROLE_VIEWER }),
    );
    access.close();
    const viewer = await newPage();
    await signIn(viewer, token);
    await open(viewer, `${stack.consoleUrl}/#/env/${envId}`);
    await column(viewer, 'Skipped').waitFor();
    await expect(viewer.getByRole('toolbar', { name: 'environment actions' }).count()).resolves.toBe(0);
    await expect(viewer.getByRole('button', { name: /^move / }).count()).resolves.toBe(0);
    await expect(viewer.getByRole('button', { name: 'Add stage' }).count()).resolves.toBe(0);
    await expect(card(viewer, 'web').getAttribute('draggable')).resolves.toBe('false');
    await shot(viewer, '08-viewer');
    // The page hides the buttons; the server decides: a hand-made call is refused as on gRPC.
    const refused = await viewer.evaluate(async (environmentId) => {
      const session = (await (await fetch('/api/session')).json()) as { csrf: string };
      const res = await fetch('/api/stageline.control.v1.DeploymentService/DeployEnvironment', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-stageline-csrf': session.csrf },
        body: JSON.stringify({ environmentId }),
      });
      return { status: res.status, body: (await res.json()) as { error: { message: string } } };
    }, envId);
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toContain('needs ROLE_DEPLOYER; the token "console-viewer" has ROLE_VIEWER');
    await viewer.context().close();
  });

  it('offers Resume on a failed run: the new run says which run it resumes and runs only what failed', async () => {
    // web (stage "frontend", the last) never becomes ready; api (DEFAULT CONTAINER) deploys before it.
    const web = (await service()).web!;
    await callUnary(stack.environments, 'updateService', {
      environmentId: envId,
      service: {
        ...web,
        healthCheck: {
          probe: { $case: 'exec', value: { command: ['/bin/false'] } },
          initialDelaySeconds: 0,
          periodSeconds: 1,
        },
        readinessTimeoutSeconds: 3,
      },
    });
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: envId,
      requester: 'console-e2e',
      forceBuild: false,
      versions: {},
    });
    const { final } = await watchToEnd(stack, deployment!.id, 150_000);
    expect(final.status).toBe(control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED);
    const failedRun = Object.fromEntries(final.services.map((s) => [s.name, s.status]));
    expect(failedRun.api).toBe(control.ServiceState.SERVICE_STATE_DEPLOYED);
    expect(failedRun.web).toBe(control.ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    await callUnary(stack.environments, 'updateService', { environmentId: envId, service: web });

    await open(page, `${stack.consoleUrl}/#/run/${final.id}`);
    await expect.poll(() => page.getByTestId('run-status').textContent()).toBe('FAILED');
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL((url) => url.hash.startsWith('#/run/') && !url.hash.endsWith(final.id));
    await expect(page.getByTestId('resumed-from').textContent()).resolves.toContain(final.id);
    await expect
      .poll(() => page.getByTestId('run-status').textContent(), { timeout: 150_000, interval: 200 })
      .toBe('SUCCEEDED');
    await expect(page.locator('tr[data-service="web"] [data-state]').textContent()).resolves.toBe('DEPLOYED');
    // api succeeded in the failed run: kept, not deployed again.
    await expect(page.locator('tr[data-service="api"] [data-state]').textContent()).resolves.toBe('SKIPPED');
    await shot(page, '09-resumed');
  });

  it('asked for nothing outside the console (fonts and scripts are bundled)', () => {
    const origin = new URL(stack.consoleUrl).origin;
    expect(requested.length).toBeGreaterThan(0);
    expect(requested.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'))).toEqual([]);
  });
});
