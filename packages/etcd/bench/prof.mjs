import { startEtcd } from '@dlock/testkit';
import { createEtcdProvider } from '../dist/index.js';
const server = await startEtcd();
const dlock = createEtcdProvider({ hosts: server.endpoint, namespace: 'bench/', sessionTtlSec: 10 });
for (let i = 0; i < 100; i++) await (await dlock.acquire('cycle')).release();
const N = 2000; const t0 = performance.now();
for (let i = 0; i < N; i++) await (await dlock.acquire('cycle')).release();
console.log('ms/cycle', ((performance.now() - t0) / N).toFixed(3));
await dlock.close(); await server.stop();
