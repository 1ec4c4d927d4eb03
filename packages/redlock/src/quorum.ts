import { BackendUnavailableError } from '@dlock/core';
import type { NodeAnswer, NodeFailure, RedisNode } from './node.js';

/** The majority of `count` nodes. */
export const majorityOf = (count: number): number => Math.floor(count / 2) + 1;

/** How the nodes voted on one request, so far. */
export interface Ballot {
  /** Nodes the request was sent to. */
  readonly nodes: number;
  /** The majority of all the provider's nodes (not only of those asked). */
  readonly quorum: number;
  /** Nodes that did what was asked (took, refreshed, re-created or deleted the key). */
  readonly granted: number;
  /** Nodes whose script said no: the key holds another owner's value (or, for a release, not ours). */
  readonly refused: number;
  /** Nodes that failed (did not answer, or answered with an error), and why. */
  readonly failed: readonly NodeFailure[];
  /** Nodes that have not answered yet. */
  readonly pending: ReadonlySet<RedisNode>;
}

/** What a node's answer counts as: a vote for, a vote against, or a failure. */
export type Vote = 'for' | 'against';

interface MutableBallot extends Ballot {
  granted: number;
  refused: number;
  readonly failed: NodeFailure[];
  readonly pending: Set<RedisNode>;
}

/**
 * Sends one request to every node at once and counts the answers as they arrive (the RedLock
 * algorithm's fan-out). Resolves with the ballot as soon as `decided` says the answers so far settle
 * the question — a majority for, or too many against for a majority to remain possible — or once
 * every node has answered. `decided` is also asked before any answer has arrived. Requests still pending then go on: `onAnswer` sees every answer, late ones
 * included. Each node bounds its own request (connect and command timeouts), so this always settles.
 */
export function castBallot<T>(
  nodes: readonly RedisNode[],
  quorum: number,
  ask: (node: RedisNode) => Promise<NodeAnswer<T>>,
  count: (value: T) => Vote,
  options: {
    decided?: (ballot: Ballot) => boolean;
    onAnswer?: (node: RedisNode, answer: NodeAnswer<T>, vote: Vote | undefined) => void;
  } = {},
): Promise<Ballot> {
  const ballot: MutableBallot = {
    nodes: nodes.length,
    quorum,
    granted: 0,
    refused: 0,
    failed: [],
    pending: new Set(nodes),
  };
  return new Promise((resolve) => {
    let settled = false;
    const settleIf = (done: boolean) => {
      if (settled || !done) return;
      settled = true;
      // A snapshot: answers that arrive later must not change what the caller decided on.
      resolve({ ...ballot, failed: [...ballot.failed], pending: new Set(ballot.pending) });
    };
    for (const node of nodes) {
      ask(node).then((answer) => {
        ballot.pending.delete(node);
        const vote = answer.ok ? count(answer.value) : undefined;
        if (!answer.ok) ballot.failed.push(answer.failure);
        else if (vote === 'for') ballot.granted++;
        else ballot.refused++;
        options.onAnswer?.(node, answer, vote);
        settleIf(ballot.pending.size === 0 || (options.decided?.(ballot) ?? false));
      });
    }
    // Some questions are settled before anyone answers (a clean-up whose nodes have all stopped answering).
    settleIf(nodes.length === 0 || (options.decided?.(ballot) ?? false));
  });
}

/** Too few nodes answered for any client to reach the ballot's quorum. */
export const quorumUnreachable = (ballot: Ballot): boolean =>
  ballot.nodes - ballot.failed.length < ballot.quorum;

/** Failures after which the request may have been applied: the node's state is unknown. */
export const unknownOutcomes = (ballot: Ballot): number =>
  ballot.failed.filter((failure) => failure.mayHaveApplied).length;

/**
 * A typed error naming the nodes that failed and why, with the vote count. `transient` is
 * false only when every failure is one that repeats until someone changes something (authentication).
 */
export function unavailableError(ballot: Ballot, outcome: string): BackendUnavailableError {
  const { failed } = ballot;
  const addresses = failed.map((failure) => failure.address).join(',');
  const reasons = failed.map((failure) => `${failure.address}: ${failure.detail}`).join('; ');
  const stillPending = ballot.pending.size > 0 ? `, ${ballot.pending.size} still pending` : '';
  return new BackendUnavailableError(
    'redlock',
    addresses || 'no failing node',
    `${outcome}: ${failed.length} of ${ballot.nodes} nodes failed, ${ballot.granted} agreed, ` +
      `${ballot.refused} refused${stillPending}, and a majority of ${ballot.quorum} is needed` +
      (reasons ? ` (${reasons})` : ''),
    { transient: failed.length === 0 || failed.some((failure) => failure.transient) },
  );
}
