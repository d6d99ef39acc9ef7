/**
 * Top functions by self time in a V8 .cpuprofile (from `harness.ts --profile DIR`), then the busy
 * time (idle left out) by area: a package, a directory of the service, Node's own JavaScript, or
 * native work (GC, system calls such as writev).
 *
 *   node --import tsx bench/profile-summary.ts DIR/CPU.*.cpuprofile [top=25]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-summary.ts FILE.cpuprofile [top]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const byFn = new Map<string, number>();
let total = 0;
for (const node of profile.nodes) {
  const us = self.get(node.id) ?? 0;
  total += us;
  const url = node.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
  const key = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`;
  byFn.set(key, (byFn.get(key) ?? 0) + us);
}
const top = [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25));
for (const [fn, us] of top) console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${fn}`);

const byArea = new Map<string, number>();
let busy = 0;
for (const node of profile.nodes) {
  const us = self.get(node.id) ?? 0;
  const { functionName, url } = node.callFrame;
  if (functionName === '(idle)') continue;
  busy += us;
  const area =
    /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
    /\/dist\/(src\/[^/]+|routes|bin)/.exec(url)?.[1] ??
    (url.startsWith('node:') ? `node:${url.slice(5).split('/')[0]}` : url === '' ? `native ${functionName}` : 'other');
  byArea.set(area, (byArea.get(area) ?? 0) + us);
}
console.log('\nBusy time by area (idle left out):');
for (const [area, us] of [...byArea.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25))) {
  console.log(`${((100 * us) / busy).toFixed(1).padStart(5)}%  ${area}`);
}
