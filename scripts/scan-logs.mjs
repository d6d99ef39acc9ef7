// Scans every log line the test suite's apps wrote for every secret they met (tokens, master
// keys, plaintext canaries) and prints one result line; exits 1 on a leak. Run by scripts/test.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const files = readdirSync(dir);
const secrets = new Set();
let lines = 0;
const logs = [];
for (const file of files) {
  const text = readFileSync(join(dir, file), 'utf8');
  if (file.endsWith('.secrets')) for (const s of text.split('\n')) if (s.length >= 8) secrets.add(s);
  if (file.endsWith('.log')) {
    logs.push(text);
    lines += text.split('\n').length - 1;
  }
}
const all = logs.join('');
const leaks = [...secrets].filter((secret) => all.includes(secret));
if (lines === 0 || secrets.size === 0) {
  console.log(`log scan: nothing to scan (${lines} lines, ${secrets.size} secrets): the capture is broken`);
  process.exit(1);
}
for (const leak of leaks) console.log(`log scan: LEAK of a secret starting ${JSON.stringify(leak.slice(0, 6))}`);
console.log(`log scan: ${lines} log lines, ${secrets.size} secrets, ${leaks.length} leaks`);
process.exit(leaks.length === 0 ? 0 : 1);
