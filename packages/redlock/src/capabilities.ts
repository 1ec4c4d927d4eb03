import type { Capabilities } from '@dlock/core';

/** What RedLock promises, and what it cannot (the README explains each point). */
export const redlockCapabilities: Capabilities = {
  fencing: 'none',
  fairness: 'none',
  wakeup: 'push',
  expiry: 'ttl',
  safety:
    'Mutual exclusion holds only while (1) clocks on the client and on every node advance at nearly the same ' +
    'rate (a clock jump on a node expires its keys early), (2) nodes do not forget a lock faster than its ' +
    'renewals repair it (a node restarted without fsync-always persistence comes back empty: a renewed lease ' +
    're-creates its key there at its next extension, but a lease that is not renewed, or two nodes forgetting ' +
    'within one renewal interval, let another client win a majority next to the current holder), and (3) a ' +
    'holder does not pause (GC, swap, SIGSTOP) past its validity after ' +
    'acquiring. No counter survives these failures, so there is no fencing token (leases carry token 0n) and a ' +
    'protected resource cannot turn away a stale holder. See Kleppmann, "How to do distributed locking", and ' +
    'antirez, "Is Redlock safe?".',
};
