import { NOISY_SPREAD } from '../results.js';
import { figure, scenario } from './figures/section.js';

export interface GlossaryEntry {
  /** Anchor: `term-<id>`. */
  readonly id: string;
  readonly term: string;
  readonly definition: string;
  /** Where the report shows it: links to figures and fault scenarios. */
  readonly shownBy: readonly string[];
}

/**
 * Every term the report uses, defined once. Figures and explanations link here with `term(id)`; the
 * report test checks that every such link has an entry.
 */
export const glossary: readonly GlossaryEntry[] = [
  {
    id: 'lease',
    term: 'lease, ttl',
    definition:
      'Ownership of a lock for a bounded time (the ttl). A holder that crashes releases nothing: the lock frees when its lease runs out.',
    shownBy: [figure('failover', 'failover'), scenario('holder-crash')],
  },
  {
    id: 'session',
    term: 'session',
    definition:
      'ZooKeeper and etcd tie locks to a client session kept alive by heartbeats instead of a per-lock ttl; a crashed holder’s locks free when the server expires its session.',
    shownBy: [figure('failover', 'failover'), scenario('holder-crash')],
  },
  {
    id: 'fencing',
    term: 'fencing token',
    definition:
      'A number that grows with every grant of a lock. The holder passes it to the resource, which rejects any request carrying a smaller token than one it has seen: a holder that lost the lock without knowing it (paused, partitioned) is turned away. A semaphore’s permits carry tokens that grow with every grant of the name, so a resource can keep only the newest `limit` tokens inside and turn the oldest away; a read-write lock’s write token exceeds every earlier token and a read token every earlier write token, so a resource can refuse writes below the highest token and reads below the highest write token.',
    shownBy: [
      scenario('holder-pause'),
      scenario('redis-failover'),
      scenario('semaphore-holder-pause'),
      scenario('read-write-writer-pause'),
    ],
  },
  {
    id: 'claim',
    term: 'claim: safe · fenced · unsafe',
    definition:
      'What a backend promises in a fault scenario. safe: no two holds overlap and no update is lost. fenced: holds may overlap (no lock can stop a paused process), but a backend with monotonic fencing tokens promises that a resource checking the tokens loses no update. unsafe: a known weakness of the backend; the scenario is there to show it.',
    shownBy: [scenario('holder-pause', 'holder-pause (fenced)'), scenario('holder-crash', 'holder-crash (safe)')],
  },
  {
    id: 'verdict',
    term: 'result: held · claim-violated · known-unsafe · not-reproduced · error',
    definition:
      'Whether the claim held. held: it did. claim-violated: it did not — a defect, and `dlock compare` exits 1. known-unsafe: an unsafe claim’s weakness showed, as expected. not-reproduced: it did not show this time, which proves nothing. error: the scenario could not run, or its result is inconclusive — a busy machine stalled a contender for half its lease or more, which looks exactly like a paused holder. A fenced claim that held can still show overlaps and lost updates: those are what an unprotected resource suffers; the promise is about a resource that checks tokens.',
    shownBy: [scenario('holder-pause')],
  },
  {
    id: 'overlap',
    term: 'overlaps · lost updates · stale writes · lost with fencing · token regressions',
    definition:
      'What the checker counts on the shared counter. Overlaps: pairs of holds active at once on the counter’s own clock — “past the lease” when the later hold began after the earlier holder’s lease had run out, so the earlier holder had outlived its lease (paused, or starved by a busy machine); for a read-write lock only pairs with a writer in them count, and for a semaphore the times a hold began while `limit` others were inside (times over the limit). Writes over readers: writes that landed while a reader was reading. Lost updates: writes based on a read another write had already superseded. Stale writes: writes a fencing resource rejects. Lost with fencing, over the limit with fencing, writes over readers with fencing: the same counts over what a fencing resource would still have accepted. Token regressions: a grant whose token did not exceed an earlier grant’s.',
    shownBy: [
      scenario('holder-pause'),
      scenario('restart-without-persistence'),
      scenario('semaphore-holder-pause'),
      scenario('read-write-writer-pause'),
    ],
  },
  {
    id: 'floor',
    term: 'floor',
    definition:
      'The round trips a lock on these servers needs at least, sent by the lab’s own minimal client of the same protocol (Redis: SET NX PX, then a compare-and-delete script; ZooKeeper: the Curator lock recipe uncontended, create an ephemeral-sequential node, list the children, delete it; etcd: put and delete), on the same servers, interleaved with the backends. “× floor” is a backend’s p50 divided by the floor’s p50 of the same round: the cost of the lock library on top of the protocol. It is a reference, not a physical limit: a library that sends fewer or cheaper commands can come in below it.',
    shownBy: [figure('uncontended', 'uncontended latency')],
  },
  {
    id: 'percentile',
    term: 'p50, p99, max',
    definition:
      'The median, the 99th percentile and the largest of the timed operations. p50 is the typical case; p99 is the slow tail a busy service sees every hundred operations.',
    shownBy: [figure('uncontended', 'uncontended latency'), figure('handoff', 'hand-off')],
  },
  {
    id: 'spread',
    term: 'block, spread, noisy',
    definition: `Every figure is measured as several short blocks, interleaved with the figures it is compared with, so a slow moment of a shared machine hits all of them alike. The figure is the median of the block results; the spread in parentheses is the smallest and largest block result. A figure is marked noisy when its spread is wider than ${Math.round(NOISY_SPREAD * 100)}% of its median: read it as a range, and do not compare it with another figure inside that range.`,
    shownBy: [figure('uncontended', 'uncontended latency'), figure('throughput', 'throughput')],
  },
  {
    id: 'contender',
    term: 'contender, contention',
    definition:
      'A loop (or a process) that repeatedly acquires and releases the lock. Contention: several contenders want the same key at once, so all but one wait.',
    shownBy: [figure('throughput', 'throughput')],
  },
  {
    id: 'handoff',
    term: 'hand-off',
    definition:
      'The time from the holder’s release() to a waiting client holding the lock (or a semaphore’s permit): how fast a backend notices a free lock or permit and gives it to a waiter.',
    shownBy: [figure('handoff', 'hand-off'), figure('semaphore', 'permit hand-off')],
  },
  {
    id: 'push',
    term: 'push wake-up',
    definition:
      'The backend tells a waiter that the lock may be free (Redis pub/sub, a ZooKeeper watch, an etcd watch), so the waiter retries at once instead of on a timer.',
    shownBy: [figure('handoff', 'hand-off')],
  },
  {
    id: 'polling',
    term: 'polling',
    definition:
      'A waiter retries on a timer without being told: it notices a release only at its next poll, so a hand-off takes up to one poll interval, but a release costs nothing.',
    shownBy: [figure('handoff', 'hand-off'), figure('throughput', 'throughput')],
  },
  {
    id: 'herd',
    term: 'herd (thundering herd)',
    definition:
      'Every release wakes every waiter; all of them retry, one wins, the rest go back to waiting. With N waiters each hand-off costs about N requests. A queue that wakes only the next waiter (a ZooKeeper predecessor watch, an etcd watch on the key just ahead) has no herd.',
    shownBy: [figure('throughput', 'throughput')],
  },
  {
    id: 'barging',
    term: 'barging',
    definition:
      'A contender that has just released takes the lock straight back before the woken or polling waiters get to it. It raises throughput (the lock rarely changes hands, so few hand-offs are paid) at the cost of fairness: the busiest contender’s share of all operations climbs far above an even share, and — on a semaphore — the slowest contender’s share falls far below it.',
    shownBy: [
      figure('throughput', 'throughput (busiest contender’s share)'),
      figure('semaphore', 'semaphores (slowest contender’s share)'),
    ],
  },
  {
    id: 'fifo',
    term: 'FIFO fairness',
    definition:
      'Waiters get the lock in the order they asked for it (ZooKeeper sequential nodes, etcd create revisions). No barging and no herd, but under contention every acquire is a hand-off to another client, so throughput is bounded by the hand-off latency.',
    shownBy: [figure('throughput', 'throughput'), figure('handoff', 'hand-off')],
  },
  {
    id: 'quorum',
    term: 'quorum, quorum round trips',
    definition:
      'RedLock asks every one of its N independent Redis nodes and holds the lock only if a majority (the quorum) granted it in time. Every attempt is a round trip to all N nodes; when contenders split the votes so that nobody reaches a majority, each undoes its partial locks on every node and tries again. A majority keeps a lock to one holder because two majorities share a node; a semaphore of limit L needs floor(N·L / (L+1)) + 1 nodes per permit, so that any L + 1 grants share a node (all 5 of 5 for a limit of 4).',
    shownBy: [
      figure('throughput', 'throughput'),
      figure('semaphore', 'semaphores'),
      scenario('redlock-minority-down'),
      scenario('redlock-majority-down'),
    ],
  },
  {
    id: 'failover',
    term: 'failover',
    definition:
      'The holder process is killed (SIGKILL) while others wait: the time until the next holder has the lock. A crashed holder releases nothing, so this is about one ttl or session timeout.',
    shownBy: [figure('failover', 'failover'), scenario('holder-crash')],
  },
  {
    id: 'semaphore',
    term: 'semaphore, permit, limit',
    definition:
      'A lock that up to `limit` holders can hold at once, each holding a permit — a lease like a lock’s, renewed, fenced and lost the same way. Used to cap concurrent calls to a downstream, jobs per tenant, or licences in a pool. Too many holders inside at once is its one violation.',
    shownBy: [figure('semaphore', 'semaphores'), scenario('semaphore-holder-pause')],
  },
  {
    id: 'read-write',
    term: 'read-write lock, read lease, write lease',
    definition:
      'Any number of readers, or one writer, never both. A read lease and a write lease are leases like a lock’s. Readers serve from a shared state that a writer changes; a writer in progress must never be seen by a reader.',
    shownBy: [figure('read-write', 'read-write locks'), scenario('read-write-writer-pause')],
  },
  {
    id: 'starvation',
    term: 'writer starvation',
    definition:
      'A writer of a read-write lock waits for a moment when no reader holds the lock. If readers keep arriving and are let in beside those already reading, that moment may never come. A queue in arrival order prevents it: readers that arrive after a waiting writer queue behind it (fairness fifo); a backend without a queue declares fairness none.',
    shownBy: [figure('read-write', 'read-write locks (write wait p99)')],
  },
  {
    id: 'little',
    term: 'Little’s law',
    definition:
      'In a steady queue, the number waiting equals the rate served times the time each waits. With N contenders on a semaphore of limit L, about N − L wait at any moment, so a FIFO waiter waits about (N − L) ÷ the acquisitions per second: a check that the measured wait is the queue and nothing else.',
    shownBy: [figure('semaphore', 'semaphores')],
  },
];


/** Ids of every glossary entry, for checking the links of a report. */
export const glossaryIds = new Set(glossary.map((entry) => entry.id));
