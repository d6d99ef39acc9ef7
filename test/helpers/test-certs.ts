/**
 * Certificates made at test time with the openssl CLI (none are committed): a CA, and leaves it
 * signed: one valid for 127.0.0.1, one that expired long ago, one for another host name. The same
 * set the spec's KMS TLS tests use (drivers-evergreen-tools x509gen: ca.pem, expired.pem,
 * wrong-host.pem), made here so nothing expires in the repository.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Leaf {
  cert: string;
  key: string;
}
export interface TestCerts {
  /** The CA certificate file (PEM), for KMS_CA_FILE. */
  caFile: string;
  /** Valid now, for IP 127.0.0.1 and DNS localhost. */
  valid: Leaf;
  /** For 127.0.0.1 too, but valid only during 2020-01-01. */
  expired: Leaf;
  /** Valid now, for DNS wrong-host.example only. */
  wrongHost: Leaf;
}

function openssl(dir: string, args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function makeTestCerts(t: { teardown(fn: () => unknown): void }): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'kms-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  openssl(dir, ['req', '-x509', ...newKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=encryption-proxy test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  // `openssl ca` is what can sign with dates in the past (x509 -req cannot, in OpenSSL 3.0).
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    ['[ca]', 'default_ca = test', '[test]', `dir = ${dir}`, 'database = $dir/index.txt', 'new_certs_dir = $dir', 'serial = $dir/serial',
      'default_md = sha256', 'policy = any', 'unique_subject = no', 'email_in_dn = no', '[any]', 'commonName = supplied', ''].join('\n'),
  );
  const leaf = (name: string, san: string, dates: string[]): Leaf => {
    openssl(dir, ['req', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    openssl(dir, ['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', `${name}.csr`,
      '-out', `${name}.crt`, '-extfile', `${name}.ext`, ...dates]);
    return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') };
  };
  return {
    caFile: join(dir, 'ca.crt'),
    valid: leaf('valid', 'IP:127.0.0.1,DNS:localhost', ['-days', '1']),
    expired: leaf('expired', 'IP:127.0.0.1,DNS:localhost', ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']),
    wrongHost: leaf('wrong-host', 'DNS:wrong-host.example', ['-days', '1']),
  };
}
