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
