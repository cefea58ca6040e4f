import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ActionName } from '../src/domain/model.ts';
import { type ChartedService, customChartOnLocal, validVersion } from '../src/domain/requests.ts';

// What a request may ask: the version forms, and the custom-chart refusal on runtimes without helm.

const hex = fc.stringMatching(/^[0-9a-f]{7,64}$/);
const tagish = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}$/);

describe('validVersion', () => {
  it('accepts every form a request may pin', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          hex.map((h) => `commit:${h}`),
          tagish.map((t) => `tag:${t}`),
          fc.integer({ min: 1, max: 999_999_999 }).map((n) => `revision:${n}`),
          tagish,
          fc.constant(''),
        ),
        (v) => {
          expect(validVersion(v)).toBe(true);
        },
      ),
    );
  });

  it('refuses malformed ones', () => {
    for (const v of [
      'commit:XYZ',
      'commit:abc',
      'revision:0',
      'revision:-1',
      'revision:1a',
      'tag:',
      '-x',
      'a b',
      '.x',
    ]) {
      expect(validVersion(v), v).toBe(false);
    }
    fc.assert(
      fc.property(tagish, fc.constantFrom(' ', '/', ':', '\n'), (t, bad) => {
        expect(validVersion(`${t}${bad}x`)).toBe(false);
      }),
    );
  });
});

const serviceArb: fc.Arbitrary<ChartedService> = fc.record({
  id: fc.constantFrom('a', 'b', 'c', 'd'),
  name: fc.constantFrom('web', 'api', 'db'),
  skipped: fc.boolean(),
  customChart: fc.boolean(),
});
const actionArb = fc.constantFrom<ActionName>('DEPLOY', 'REDEPLOY', 'STOP', 'RESTART', 'DELETE', 'ROLLBACK');

describe('customChartOnLocal', () => {
  it('refuses exactly when a targeted service names its own chart, on a runtime other than kubernetes, for an action that deploys', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('local', '', 'kubernetes'),
        fc.uniqueArray(serviceArb, { selector: (s) => s.id, maxLength: 4 }),
        actionArb,
        fc.uniqueArray(fc.constantFrom<string>('a', 'b', 'c', 'd'), { maxLength: 3 }),
        (runtime, services, action, serviceIds) => {
          const refused = customChartOnLocal(runtime, services, action, serviceIds);
          const targets =
            serviceIds.length > 0
              ? services.filter((s) => serviceIds.includes(s.id))
              : services.filter((s) => !s.skipped);
          const deploys = action === 'DEPLOY' || action === 'REDEPLOY' || action === 'ROLLBACK';
          const expected = runtime !== 'kubernetes' && deploys && targets.some((s) => s.customChart);
          expect(refused !== undefined).toBe(expected);
          // It names a targeted service that has a chart.
          if (refused !== undefined) expect(targets.some((s) => s.customChart && s.name === refused)).toBe(true);
        },
      ),
    );
  });
});
