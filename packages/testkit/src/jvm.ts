/**
 * Flags for the JVMs the testkit starts (ZooKeeper servers, the Curator peer): a bounded heap, serial GC
 * and no C2 compiler start a JVM in a fraction of a second and keep it small on a shared machine.
 */
export function smallJvmFlags(maxHeapMb: number): string[] {
  return [
    `-Xmx${maxHeapMb}m`,
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-XX:-UsePerfData',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.net.preferIPv4Stack=true',
  ];
}
