// Preloaded into the server process by the soak test (node --expose-gc --import this-file):
// on an IPC message "sample", run a full garbage collection and answer with process.memoryUsage(),
// so heap samples measure what is still referenced, not how lazily V8 collects. Test-only.
process.on('message', (message) => {
  if (message !== 'sample' || typeof globalThis.gc !== 'function' || !process.send) return;
  globalThis.gc();
  process.send({ sample: process.memoryUsage() });
});
