/**
 * deploy/kubernetes/ against the Kubernetes API schemas, offline: `kubernetes-validate` (PyPI,
 * test/requirements.txt) ships the schemas of every Kubernetes version in its package; strict mode
 * also refuses fields the API does not know (a misspelt probe would otherwise be dropped
 * silently by the API server). Where the machine allows it, the validator runs in a network
 * namespace of its own with no network at all (`unshare -n`), which shows nothing is fetched. A
 * broken manifest must fail, or a validator that passes everything would pass this test too.
 * Then what the schemas cannot see: the probes match the service's health routes, the spool is a
 * per-pod volume at AUDIT_SPOOL_DIR, labels and selectors agree, the pods run non-root on a
 * read-only root filesystem, the ServiceAccount carries the IRSA role, and the ConfigMap with the
 * Secret's keys passes the service's own configuration check.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dir = join(root, 'deploy/kubernetes');
const KUBERNETES_VERSION = '1.37.0';
const python = process.env.PYTHON ?? 'python3';
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => join(dir, f));
const offline = spawnSync('unshare', ['-n', 'true']).status === 0;

/** Run the validator on `paths`: its exit code and output. */
function validate(paths: string[]) {
  const cmd = [python, '-m', 'kubernetes_validate', '--strict', '--kubernetes-version', KUBERNETES_VERSION, ...paths];
  const r = offline ? spawnSync('unshare', ['-n', ...cmd], { encoding: 'utf8' }) : spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

type Resource = Record<string, any>;
const resources: Resource[] = files.flatMap((f) => parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJS() as Resource));
const find = (kind: string, name?: string) => resources.filter((r) => r.kind === kind && (name === undefined || r.metadata?.name === name));
const one = (kind: string, name?: string) => {
  const found = find(kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
};

t.test('the validator is there, with the schemas of the Kubernetes version we check against', async (t) => {
  const r = spawnSync(python, ['-c', 'import kubernetes_validate.utils as u; print(u.latest_version()); print("\\n".join(u.all_versions()))'], { encoding: 'utf8' });
  t.equal(r.status, 0, 'kubernetes_validate imports (pip install -r test/requirements.txt)', { stderr: r.stderr });
  t.ok(r.stdout.split('\n').includes(KUBERNETES_VERSION), `it ships the ${KUBERNETES_VERSION} schemas`);
  t.comment(offline ? 'the validator runs with no network (unshare -n)' : 'unshare -n is not allowed here: the validator runs with the network of the test');
});

t.test('every manifest in deploy/kubernetes is valid against the Kubernetes API schemas (strict)', async (t) => {
  t.ok(files.length >= 5, `manifests found (${files.length})`);
  const r = validate(files);
  t.equal(r.status, 0, 'kubernetes-validate passes them all', { output: r.output });
  for (const res of resources) t.match(r.output, new RegExp(`passed for resource ${res.kind.toLowerCase()}/${res.metadata.name} `), `${res.kind} ${res.metadata.name} was validated`);
});

t.test('a broken manifest fails the same check', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'k8s-broken-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const statefulset = readFileSync(join(dir, 'statefulset.yaml'), 'utf8');
  const broken = [
    // A misspelt field: the API server would drop it, and the pod would have no readiness probe.
    { name: 'unknown field', text: statefulset.replace('readinessProbe:', 'readinesProbe:'), error: /'readinesProbe' was unexpected/ },
    { name: 'wrong type', text: statefulset.replace('replicas: 3', 'replicas: three'), error: /spec\.replicas: 'three' is not of type 'integer'/ },
    { name: 'missing required field', text: statefulset.replace(/^ {2}selector:\n {4}matchLabels:\n {6}app.kubernetes.io\/name: encryption-proxy\n/m, ''), error: /'selector' is a required property/ },
  ];
  for (const b of broken) {
    t.not(b.text, statefulset, `${b.name}: the manifest was changed`);
    const file = join(work, `${b.name.replace(/ /g, '-')}.yaml`);
    writeFileSync(file, b.text);
    const r = validate([file]);
    t.not(r.status, 0, `${b.name}: the validator fails`);
    t.match(r.output, b.error, `${b.name}: and says why`);
  }
});

t.test('the StatefulSet: a spool volume per pod at AUDIT_SPOOL_DIR, probes on the health routes, non-root and read-only', async (t) => {
  const sts = one('StatefulSet');
  const pod = sts.spec.template.spec;
  const container = pod.containers[0];
  const config = one('ConfigMap', container.envFrom[0].configMapRef.name).data;
  t.equal(sts.spec.replicas, 3, 'three pods');
  const claim = sts.spec.volumeClaimTemplates.find((c: Resource) => c.metadata.name === 'audit-spool');
  t.ok(claim, 'a volume claim template for the audit spool (a persistent volume per pod)');
  t.same(claim.spec.accessModes, ['ReadWriteOnce']);
  const mount = container.volumeMounts.find((m: Resource) => m.name === 'audit-spool');
  t.equal(mount?.mountPath, config.AUDIT_SPOOL_DIR, 'AUDIT_SPOOL_DIR is where the claim is mounted');
  t.notOk(mount?.readOnly, 'and it is writable');
  t.notOk(pod.volumes.some((v: Resource) => v.name === 'audit-spool'), 'not shadowed by a pod volume (an emptyDir would lose unshipped events)');
  t.same(sts.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' }, 'spool volumes outlive a scale-down');
  t.notOk('AUDIT_CHAIN_ID' in config, 'no shared AUDIT_CHAIN_ID: each spool names its own chain');

  t.equal(container.readinessProbe.httpGet.path, '/health/ready', 'readiness: /health/ready');
  t.equal(container.livenessProbe.httpGet.path, '/health/live', 'liveness: /health/live (never the dependencies)');
  t.equal(container.startupProbe.httpGet.path, '/health/live');
  // /health/ready waits up to 1 s for the audit head; a busy pod answers behind its requests.
  t.ok(container.readinessProbe.timeoutSeconds >= 2, 'readiness timeout above the route\'s own 1 s wait');
  t.ok(container.livenessProbe.periodSeconds * container.livenessProbe.failureThreshold >= 30, 'liveness gives a stuck pod at least 30 s');
  const port = container.ports.find((p: Resource) => p.name === 'http');
  t.equal(String(port.containerPort), config.PORT, 'the probes\' port is the one the service listens on');
  t.equal(config.HOST, '0.0.0.0', 'and it listens on the pod address');

  const shutdownS = Number(config.SHUTDOWN_TIMEOUT_MS) / 1000;
  const preStopS = Number(container.lifecycle.preStop.exec.command[1]);
  t.ok(pod.terminationGracePeriodSeconds > preStopS + shutdownS, 'the grace period covers preStop and the service\'s own shutdown');

  t.equal(pod.securityContext.runAsNonRoot, true);
  t.equal(pod.securityContext.runAsUser, 1000, 'the image\'s node user');
  t.equal(pod.securityContext.fsGroup, 1000, 'the spool volume is writable for it');
  t.equal(container.securityContext.readOnlyRootFilesystem, true, 'read-only root filesystem');
  t.equal(container.securityContext.allowPrivilegeEscalation, false);
  t.same(container.securityContext.capabilities.drop, ['ALL']);
  for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) t.ok(container.resources[kind]?.[r], `resources.${kind}.${r}`);

  const sa = one('ServiceAccount', pod.serviceAccountName);
  t.match(sa.metadata.annotations['eks.amazonaws.com/role-arn'], /^arn:aws:iam::\d{12}:role\/.+/, 'the ServiceAccount names the IAM role for KMS (IRSA)');
  t.equal(config.KMS_PROVIDERS, 'aws');
  t.notOk(container.env.some((e: Resource) => /^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)$/.test(e.name)) || 'AWS_ACCESS_KEY_ID' in config, 'no AWS keys: the role is the only credential');
});

t.test('Services and the PodDisruptionBudget select the StatefulSet\'s pods', async (t) => {
  const sts = one('StatefulSet');
  const labels = sts.spec.template.metadata.labels;
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  t.same(sts.spec.selector.matchLabels, labels);
  const headless = one('Service', sts.spec.serviceName);
  t.equal(headless.spec.clusterIP, 'None', 'the governing Service is headless');
  for (const svc of find('Service')) {
    t.ok(matches(svc.spec.selector), `Service ${svc.metadata.name} selects the pods`);
    t.equal(svc.spec.ports[0].targetPort, 'http', `Service ${svc.metadata.name} targets the named port`);
  }
  const pdb = one('PodDisruptionBudget');
  t.ok(matches(pdb.spec.selector.matchLabels), 'the PDB selects the pods');
  t.ok(pdb.spec.maxUnavailable === 1 || pdb.spec.minAvailable === sts.spec.replicas - 1, 'one pod at a time');
});

t.test('the ConfigMap and the Secret\'s keys pass the service\'s own configuration check', async (t) => {
  const sts = one('StatefulSet');
  const container = sts.spec.template.spec.containers[0];
  const config = one('ConfigMap').data as Record<string, string>;
  const work = mkdtempSync(join(tmpdir(), 'k8s-config-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // The Secret's items, as the pod sees them (files under the secrets mount, and env).
  const secretMount = container.volumeMounts.find((m: Resource) => m.name === 'secrets').mountPath as string;
  const secretFiles: Record<string, string> = { 'admin-token': 'x'.repeat(43), 'audit-hmac-key': Buffer.alloc(32, 7).toString('base64') };
  const env: Record<string, string> = { ...config };
  for (const e of container.env as Resource[]) {
    if (e.value !== undefined) env[e.name] = String(e.value).startsWith(secretMount) ? join(work, String(e.value).slice(secretMount.length + 1)) : e.value;
    else if (e.valueFrom?.secretKeyRef?.key === 'mongodb-uri') env[e.name] = 'mongodb://db-0,db-1,db-2/?replicaSet=rs0';
  }
  for (const [name, value] of Object.entries(secretFiles)) writeFileSync(join(work, name), value);
  const loaded = loadConfig(env);
  t.equal(loaded.audit.spool.dir, config.AUDIT_SPOOL_DIR);
  t.same(loaded.kms.aws?.allowedKeys, config.AWS_KMS_ALLOWED_KEYS!.split(','), 'the CMKs clients may name are listed');
  t.notOk(loaded.kms.localMasterKey, 'no local master key in the cluster');
  t.equal(loaded.audit.hmacKey.length, 32, 'the audit HMAC key comes from the Secret');
});
