// Host affinity (issue 26): a `local` environment is bound to one deploy host — the one asked for, or
// the configured host with the fewest `local` environments — and stays there.
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { applySettings, chooseDeployHost } from '../src/domain/environment.ts';

describe('deploy host of an environment', () => {
  it('binds a new local environment to the least used configured host, or the one asked for', () => {
    const load = new Map([
      ['h1', 3],
      ['h2', 1],
    ]);
    expect(chooseDeployHost('local', '', ['h1', 'h2', 'h3'], load)).toBe('h3');
    expect(chooseDeployHost('local', '', ['h1', 'h2'], load)).toBe('h2');
    expect(chooseDeployHost('local', 'h1', ['h1', 'h2'], load)).toBe('h1');
    expect(chooseDeployHost('local', '', [], load)).toBe('');
    expect(chooseDeployHost('kubernetes', '', ['h1'], load)).toBe('');
  });

  it('never moves an environment once bound, and names the field of a bad or unknown host', () => {
    const hosts = ['h1', 'h2'];
    const apply = (input: Partial<control.EnvironmentSettings>, current?: ReturnType<typeof applySettings>) =>
      applySettings(control.EnvironmentSettings.fromPartial(input), current, [], hosts);
    const bound = apply({ deployHost: 'h1' });
    expect(bound.deployHost).toBe('h1');
    expect(apply({ maxParallelBuilds: 2 }, bound).deployHost).toBe('h1');
    expect(() => apply({ deployHost: 'h2' }, bound)).toThrow(
      /^settings\.deploy_host: the environment is bound to deploy host "h1"/,
    );
    expect(() => apply({ deployHost: 'Not_A_Label' })).toThrow(/^settings\.deploy_host: must be a DNS label/);
    expect(() => apply({ deployHost: 'h9' })).toThrow(/^settings\.deploy_host: "h9" is not one of the deploy hosts/);
    expect(() => applySettings(control.EnvironmentSettings.fromPartial({ deployHost: 'h1' }))).toThrow(
      /^settings\.deploy_host: no deploy hosts are configured/,
    );
    // An unbound environment may be bound later.
    const unbound = apply({});
    expect(apply({ deployHost: 'h2' }, unbound).deployHost).toBe('h2');
  });
});
