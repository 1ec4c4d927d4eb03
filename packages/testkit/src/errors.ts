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
