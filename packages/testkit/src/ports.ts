import { createServer } from 'node:net';

const LOOPBACK = '127.0.0.1';
const MAX_ATTEMPTS = 50;
const REMEMBERED_PORTS = 1024;

/**
 * Ports handed out recently by this process. The OS may return a port again as soon as our probe socket
 * closes, and a server started from the first hand-out may not have bound it yet.
 */
const recentlyHandedOut = new Set<number>();
/** Ports this process listens on only intermittently (a fault proxy refusing connections). */
const reserved = new Set<number>();

/** Keeps `freePort()` from handing out `port` until `releasePort(port)`. */
export function reservePort(port: number): void {
  reserved.add(port);
}

export function releasePort(port: number): void {
  reserved.delete(port);
}

function bindEphemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => {
      const address = probe.address();
      probe.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('loopback probe socket has no port'));
      });
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out recently. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const port = await bindEphemeralPort();
    if (recentlyHandedOut.has(port) || reserved.has(port)) continue;
    recentlyHandedOut.add(port);
    if (recentlyHandedOut.size > REMEMBERED_PORTS) {
      const oldest = recentlyHandedOut.values().next().value;
      if (oldest !== undefined) recentlyHandedOut.delete(oldest);
    }
    return port;
  }
  throw new Error(`no free loopback port found in ${MAX_ATTEMPTS} attempts`);
}

export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  return ports;
}
