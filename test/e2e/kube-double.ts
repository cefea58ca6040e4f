// The one test double the project allows: a `helm` and a `kubectl` that record what they are given and
// answer like a cluster with a deployed release (helm copies each chart it is handed to upgrade into
// `recorded`, which the worker removes from its own disk once helm returns). Fixed scripts of the
// test's own (no input of anyone's): the deploy worker runs them with a minimal environment.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export interface KubeDouble {
  /** Where helm copied each chart it installed (`chart-<pid>` directories). */
  recorded: string;
  /** The deploy worker's environment: HELM and KUBECTL pointing at the scripts. */
  env: { HELM: string; KUBECTL: string };
}

/** Writes the two scripts into a directory of the calling test file's own, removed after it. */
export function recordingHelmAndKubectl(label: string): KubeDouble {
  const scratch = mkdtempSync(join(tmpdir(), `stageline-k8s-${label}-`));
  const recorded = join(scratch, 'recorded');
  const helm = join(scratch, 'helm');
  const kubectl = join(scratch, 'kubectl');
  writeFileSync(
    helm,
    `#!/bin/sh
mkdir -p '${recorded}'
case "$1" in
  version) echo v3.15.4 ;;
  history) echo '[{"revision":1,"status":"deployed"}]' ;;
  upgrade) cp -r "$4" '${recorded}'/chart-$$ ;;
esac
exit 0
`,
  );
  writeFileSync(kubectl, '#!/bin/sh\necho "{}"\nexit 0\n');
  chmodSync(helm, 0o755);
  chmodSync(kubectl, 0o755);
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  return { recorded, env: { HELM: helm, KUBECTL: kubectl } };
}
