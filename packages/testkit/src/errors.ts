/** A server binary (or the JVM / jar ZooKeeper needs) is not installed on this machine. */
export class MissingBinaryError extends Error {
  override readonly name = 'MissingBinaryError';

  constructor(
    readonly binary: string,
    readonly debianPackage: string,
    detail = `\`${binary}\` was not found on PATH`,
  ) {
    super(`${detail}; install it with \`apt-get install ${debianPackage}\``);
  }
}

/** A server did not become healthy within its start timeout, or exited while starting. */
export class ServerStartError extends Error {
  override readonly name: string = 'ServerStartError';
}

/**
 * The server could not bind its port, or another server answered on it: another process took the port
 * between `freePort()` and the bind. Starting again on fresh ports is expected to succeed.
 */
export class PortConflictError extends ServerStartError {
  override readonly name = 'PortConflictError';
}

/** A testkit function was called with a value it does not accept; `field` names the offending option. */
export class InvalidArgumentError extends TypeError {
  override readonly name = 'InvalidArgumentError';

  constructor(
    readonly field: string,
    readonly value: unknown,
    allowed: string,
  ) {
    super(`${field} must be ${allowed}, got ${describeValue(value)}`);
  }
}

/** The fault proxy was closed (by `close()` or `stopAll()`) before the call, or while a fault was pending. */
export class FaultProxyClosedError extends Error {
  override readonly name = 'FaultProxyClosedError';

  constructor(readonly address: string) {
    super(`the fault proxy at ${address} is closed`);
  }
}

/** `heal()` was called while a `dropNextReply()` had not happened yet; no reply was dropped. */
export class FaultCancelledError extends Error {
  override readonly name = 'FaultCancelledError';

  constructor(
    readonly fault: string,
    readonly address: string,
  ) {
    super(`${fault} at the fault proxy ${address} was cancelled by heal() before it happened`);
  }
}

/**
 * After `refuseConnections(ms)`, the fault proxy could not listen on its port again within its rebind
 * window: another socket holds the port (EADDRINUSE) for longer than a brief race.
 */
export class ProxyRebindError extends Error {
  override readonly name = 'ProxyRebindError';

  constructor(
    readonly port: number,
    readonly rebindTimeoutMs: number,
    cause: unknown,
  ) {
    super(
      `the fault proxy could not listen on 127.0.0.1:${port} again within ${rebindTimeoutMs} ms: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/**
 * A call to the Curator peer failed: Curator threw (`javaClass` names the exception, e.g.
 * `java.lang.IllegalMonitorStateException` for releasing a lock the peer does not hold), or no answer
 * came within the call's timeout.
 */
export class CuratorPeerError extends Error {
  override readonly name: string = 'CuratorPeerError';

  constructor(
    message: string,
    readonly op: string,
    readonly javaClass?: string,
  ) {
    super(message);
  }
}

/** The Curator peer's JVM is gone (killed, crashed or closed): this call and every later one fail. */
export class CuratorPeerExitedError extends CuratorPeerError {
  override readonly name = 'CuratorPeerExitedError';
}
