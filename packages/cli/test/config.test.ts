import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configPath, readConfig, resolveConfig, writeConfigValue } from '../src/config.ts';
import { UsageError } from '../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'stageline-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('where the CLI finds Stageline', () => {
  it('takes --address over STAGELINE_ADDRESS over the config file over the default, and says which', () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'address: 10.0.0.1:1\nproject: demo\nenvironment: demo/staging\n');
    const env = { STAGELINE_CONFIG: file };
    expect(resolveConfig({}, env).address).toEqual({ value: '10.0.0.1:1', from: file });
    expect(resolveConfig({}, { ...env, STAGELINE_ADDRESS: '10.0.0.2:2' }).address).toEqual({
      value: '10.0.0.2:2',
      from: 'STAGELINE_ADDRESS',
    });
    expect(resolveConfig({ address: '10.0.0.3:3' }, { ...env, STAGELINE_ADDRESS: '10.0.0.2:2' }).address).toEqual({
      value: '10.0.0.3:3',
      from: '--address',
    });
    const none = resolveConfig({}, { STAGELINE_CONFIG: join(dir, 'absent.yaml') });
    expect(none.address).toEqual({ value: '127.0.0.1:50051', from: 'default' });
    expect(none.buildAddress).toEqual({ value: '127.0.0.1:50053', from: 'default' });
    expect(resolveConfig({}, env)).toMatchObject({ project: 'demo', environment: 'demo/staging' });
    expect(resolveConfig({}, { ...env, STAGELINE_BUILD_ADDRESS: '10.0.0.4:4' }).buildAddress.value).toBe('10.0.0.4:4');
  });

  it('lives in ~/.config/stageline/config.yaml unless XDG_CONFIG_HOME or STAGELINE_CONFIG say otherwise', () => {
    expect(configPath({ HOME: '/home/u' })).toBe('/home/u/.config/stageline/config.yaml');
    expect(configPath({ HOME: '/home/u', XDG_CONFIG_HOME: '/cfg' })).toBe('/cfg/stageline/config.yaml');
    expect(configPath({ STAGELINE_CONFIG: '/x.yaml' })).toBe('/x.yaml');
  });

  it('refuses an unknown setting with its file and line', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'address: a:1\nadress: b:2\n');
    expect(() => readConfig(file)).toThrow(UsageError);
    expect(() => readConfig(file)).toThrow(`${file}:2:1: adress: is not a known setting`);
  });

  it('config set and unset keep the rest of the file', () => {
    const file = join(dir, 'set.yaml');
    writeFileSync(file, '# mine\nproject: demo\n');
    writeConfigValue(file, 'address', '127.0.0.1:6000');
    expect(readConfig(file)).toEqual({ project: 'demo', address: '127.0.0.1:6000' });
    expect(readFileSync(file, 'utf8')).toContain('# mine');
    writeConfigValue(file, 'project', undefined);
    expect(readConfig(file)).toEqual({ address: '127.0.0.1:6000' });
  });
});
