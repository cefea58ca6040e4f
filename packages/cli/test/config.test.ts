import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configPath, readConfig, resolveConfig, securityOf, tokenOf, writeConfigValue } from '../src/config.ts';
import { UsageError } from '../src/errors.ts';
import { stageline } from './run.ts';

const dir = mkdtempSync(join(tmpdir(), 'stageline-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'stl_0123456789abcdef0123456789abcdef_SECRETsecretSECRETsecretSECRETsecretSECRET';

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
    expect(resolveConfig({}, env)).toMatchObject({ project: 'demo', environment: 'demo/staging' });
  });

  it('takes --ca over STAGELINE_CA over the config file, with no default; a relative path is relative to the file', () => {
    const file = join(dir, 'ca.yaml');
    writeFileSync(file, 'ca: certs/ca.pem\n');
    const env = { STAGELINE_CONFIG: file };
    expect(resolveConfig({}, env).ca).toEqual({ value: join(dir, 'certs/ca.pem'), from: file });
    expect(resolveConfig({}, { ...env, STAGELINE_CA: '/env/ca.pem' }).ca).toEqual({
      value: '/env/ca.pem',
      from: 'STAGELINE_CA',
    });
    expect(resolveConfig({ ca: '/flag/ca.pem' }, { ...env, STAGELINE_CA: '/env/ca.pem' }).ca).toEqual({
      value: '/flag/ca.pem',
      from: '--ca',
    });
    expect(resolveConfig({}, { STAGELINE_CONFIG: join(dir, 'absent.yaml') }).ca).toBeUndefined();
  });

  it('takes the token from --token, STAGELINE_TOKEN, token:, then a file: --token-file, STAGELINE_TOKEN_FILE, tokenFile:', () => {
    const file = join(dir, 'token.yaml');
    writeFileSync(file, 'token: from-config\ntokenFile: tokens/mine\n');
    const all = {
      STAGELINE_CONFIG: file,
      STAGELINE_TOKEN: 'from-env',
      STAGELINE_TOKEN_FILE: '/env/token',
    };
    const flags = { token: 'from-flag', tokenFile: '/flag/token' };
    const token = (f: typeof flags | Partial<typeof flags>, env: NodeJS.ProcessEnv) => resolveConfig(f, env).token;
    expect(token(flags, all)).toEqual({ value: 'from-flag', from: '--token' });
    expect(token({ tokenFile: flags.tokenFile }, all)).toEqual({ value: 'from-env', from: 'STAGELINE_TOKEN' });
    const { STAGELINE_TOKEN: _, ...noEnvToken } = all;
    // A token in the config file wins over any file named elsewhere (the dev wrapper always names one).
    expect(token({ tokenFile: flags.tokenFile }, noEnvToken)).toEqual({ value: 'from-config', from: file });
    const fileOnly = join(dir, 'token-file-only.yaml');
    writeFileSync(fileOnly, 'tokenFile: tokens/mine\n');
    const files = { ...noEnvToken, STAGELINE_CONFIG: fileOnly };
    expect(token({ tokenFile: flags.tokenFile }, files)).toEqual({ file: '/flag/token', from: '--token-file' });
    expect(token({}, files)).toEqual({ file: '/env/token', from: 'STAGELINE_TOKEN_FILE' });
    const { STAGELINE_TOKEN_FILE: __, ...configOnly } = files;
    expect(token({}, configOnly)).toEqual({ file: join(dir, 'tokens/mine'), from: fileOnly });
    expect(token({}, { STAGELINE_CONFIG: join(dir, 'absent.yaml') })).toBeUndefined();
  });

  it('reads a token file trimmed, and says which file and who named it when it cannot', () => {
    const tokenFile = join(dir, 'a.token');
    writeFileSync(tokenFile, `  ${SECRET}\n\n`);
    expect(tokenOf({ file: tokenFile, from: 'STAGELINE_TOKEN_FILE' })).toBe(SECRET);
    expect(tokenOf({ value: ` ${SECRET}\n`, from: '--token' })).toBe(SECRET);
    const missing = join(dir, 'missing.token');
    expect(() => tokenOf({ file: missing, from: '--token-file' })).toThrow(UsageError);
    expect(() => tokenOf({ file: missing, from: '--token-file' })).toThrow(
      `cannot read the token file ${missing} (from --token-file): ENOENT`,
    );
    writeFileSync(join(dir, 'empty.token'), '\n');
    expect(() => tokenOf({ file: join(dir, 'empty.token'), from: 'x' })).toThrow('is empty');
  });

  it('without a token or a CA, a command that calls control stops with what to set', () => {
    const config = resolveConfig({ ca: '/ca.pem' }, { STAGELINE_CONFIG: join(dir, 'absent.yaml') });
    expect(() => securityOf(config)).toThrow(
      /^no token: pass --token, set STAGELINE_TOKEN, or `stageline config set token …`/,
    );
    const noCa = resolveConfig({ token: SECRET }, { STAGELINE_CONFIG: join(dir, 'absent.yaml') });
    expect(() => securityOf(noCa)).toThrow(
      /^no CA certificate to verify control with: pass --ca <file>, set STAGELINE_CA/,
    );
  });

  it('lives in ~/.config/stageline/config.yaml unless XDG_CONFIG_HOME or STAGELINE_CONFIG say otherwise', () => {
    expect(configPath({ HOME: '/home/u' })).toBe('/home/u/.config/stageline/config.yaml');
    expect(configPath({ HOME: '/home/u', XDG_CONFIG_HOME: '/cfg' })).toBe('/cfg/stageline/config.yaml');
    expect(configPath({ STAGELINE_CONFIG: '/x.yaml' })).toBe('/x.yaml');
  });

  it('refuses an unknown setting with its file and line, and ignores the retired buildAddress', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'address: a:1\nadress: b:2\n');
    expect(() => readConfig(file)).toThrow(UsageError);
    expect(() => readConfig(file)).toThrow(`${file}:2:1: adress: is not a known setting`);
    const old = join(dir, 'old.yaml');
    writeFileSync(old, 'address: a:1\nbuildAddress: b:2\n');
    expect(readConfig(old)).toEqual({ address: 'a:1' });
  });

  it('config set and unset keep the rest of the file; a file holding a token is 0600', () => {
    const file = join(dir, 'set.yaml');
    writeFileSync(file, '# mine\nproject: demo\n');
    writeConfigValue(file, 'address', '127.0.0.1:6000');
    expect(readConfig(file)).toEqual({ project: 'demo', address: '127.0.0.1:6000' });
    expect(readFileSync(file, 'utf8')).toContain('# mine');
    writeConfigValue(file, 'project', undefined);
    expect(readConfig(file)).toEqual({ address: '127.0.0.1:6000' });
    writeConfigValue(file, 'token', SECRET);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('the config commands', () => {
  const base = (name: string): NodeJS.ProcessEnv => ({ STAGELINE_CONFIG: join(dir, name), HOME: dir });

  it('config view says where the CA and the token came from, and never prints the token', async () => {
    const env = { ...base('view.yaml'), STAGELINE_CA: '/some/ca.pem', STAGELINE_TOKEN: SECRET };
    const text = await stageline(['config', 'view'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ca +\/some\/ca\.pem {2}\(STAGELINE_CA\) {2}— the file does not exist$/m);
    expect(text.stdout).toMatch(/^token +\(set\) {2}\(STAGELINE_TOKEN\)$/m);
    for (const format of ['json', 'yaml']) {
      const data = await stageline(['config', 'view', '-o', format], env);
      expect(data.code).toBe(0);
      expect(data.stdout).toContain('STAGELINE_TOKEN');
      expect(data.stdout + data.stderr).not.toContain('SECRET');
    }
    const json = JSON.parse((await stageline(['config', 'view', '-o', 'json'], env)).stdout);
    expect(json.token).toEqual({ set: true, from: 'STAGELINE_TOKEN' });
    expect(json.ca).toEqual({ value: '/some/ca.pem', from: 'STAGELINE_CA' });

    // From --token, from a file, from the config file: the value never shows.
    const flag = await stageline(['config', 'view', '--token', SECRET], base('view.yaml'));
    expect(flag.stdout).toMatch(/^token +\(set\) {2}\(--token\)$/m);
    const tokenFile = join(dir, 'view.token');
    writeFileSync(tokenFile, `${SECRET}\n`);
    const fromFile = await stageline(['config', 'view'], { ...base('view.yaml'), STAGELINE_TOKEN_FILE: tokenFile });
    expect(fromFile.stdout).toMatch(
      new RegExp(`^token +\\(set\\) {2}\\(read from ${tokenFile}, named by STAGELINE_TOKEN_FILE\\)$`, 'm'),
    );
    const set = await stageline(['config', 'set', 'token', SECRET], base('view.yaml'));
    expect(set.code).toBe(0);
    expect(set.stdout).toBe(`token = (set)  (${join(dir, 'view.yaml')})\n`);
    const fromConfig = await stageline(['config', 'view'], base('view.yaml'));
    expect(fromConfig.stdout).toMatch(new RegExp(`^token +\\(set\\) {2}\\(${join(dir, 'view.yaml')}\\)$`, 'm'));
    for (const r of [flag, fromFile, set, fromConfig]) expect(r.stdout + r.stderr).not.toContain('SECRET');

    const none = await stageline(['config', 'view'], base('none.yaml'));
    expect(none.stdout).toMatch(/^token +- {2}\(none: pass --token, set STAGELINE_TOKEN/m);
    expect(none.stdout).toMatch(/^ca +- {2}\(none: pass --ca <file>/m);
    const missing = await stageline(['config', 'view'], { ...base('none.yaml'), STAGELINE_TOKEN_FILE: '/no/such' });
    expect(missing.stdout).toMatch(/^token +\(not usable: cannot read the token file \/no\/such/m);
  });

  it('config set stores ca and tokenFile as absolute paths', async () => {
    const env = base('paths.yaml');
    expect((await stageline(['config', 'set', 'ca', join(dir, 'x', '..', 'ca.pem')], env)).code).toBe(0);
    expect(readConfig(join(dir, 'paths.yaml')).ca).toBe(join(dir, 'ca.pem'));
    expect((await stageline(['config', 'unset', 'buildAddress'], env)).code).toBe(0);
    const unknown = await stageline(['config', 'set', 'buildAddress', 'a:1'], env);
    expect(unknown.code).toBe(2);
  });

  it('without a token: a usage error (exit 2) before any call is made', async () => {
    // Nothing listens at 127.0.0.1:1: had a call been made, it would say so with exit 3.
    const r = await stageline(['env', 'list', '--address', '127.0.0.1:1', '--ca', '/some/ca.pem'], base('none.yaml'));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'stageline: no token: pass --token, set STAGELINE_TOKEN, or `stageline config set token …` (or name a file holding one: --token-file, STAGELINE_TOKEN_FILE, `stageline config set tokenFile …`); an admin makes tokens with `stageline token create`\n',
    );
    const neither = await stageline(['status', 'demo/x', '--address', '127.0.0.1:1'], base('none.yaml'));
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/^stageline: no token: .*\nstageline: no CA certificate to verify control with/);
    const noFile = await stageline(['env', 'list', '--address', '127.0.0.1:1', '--ca', '/some/ca.pem'], {
      ...base('none.yaml'),
      STAGELINE_TOKEN_FILE: '/no/such',
    });
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('cannot read the token file /no/such (from STAGELINE_TOKEN_FILE): ENOENT');
    const noCa = await stageline(['env', 'list', '--address', '127.0.0.1:1', '--ca', '/some/ca.pem'], {
      ...base('none.yaml'),
      STAGELINE_TOKEN: SECRET,
    });
    expect(noCa.code).toBe(2);
    expect(noCa.stderr).toBe('stageline: the CA certificate /some/ca.pem (from --ca) does not exist\n');
  });

  it('has no --build-address any more', async () => {
    const r = await stageline(['explain-build', '--service', 'api', '--build-address', '127.0.0.1:1'], base('x.yaml'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--build-address'");
  });
});
