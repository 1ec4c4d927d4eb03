import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.retry.ExponentialBackoffRetry;

/**
 * A real Apache Curator client driven over stdin/stdout, the interop peer of @dlock/testkit's
 * `startCuratorPeer` (src/curator.ts holds the other half of the protocol).
 *
 * Usage: java CuratorPeer <connectString> <sessionTimeoutMs> <connectionTimeoutMs>
 *
 * Requests, one JSON object per stdin line: {"id": n, "op": "...", ...}. Replies, one per request, in
 * completion order: {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "error": {"type",
 * "message"}}. Unsolicited lines carry "event": "ready" (once connected), "failed" (could not connect),
 * "connectionState" (every Curator ConnectionState change). Logs go to stderr, never to stdout.
 *
 * Curator's locks are reentrant per Java thread and must be released by the thread that acquired
 * them, so every lock object (a mutex, a read lock, a write lock) gets one thread of its own that runs
 * its acquire and release calls in order. Every other call (semaphore acquire and release — a lease
 * may be returned from any thread —, participant nodes) runs on a pooled thread of its own, so a
 * blocked acquire holds up nothing but later calls on the same lock object.
 */
public final class CuratorPeer {
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The protocol stream; System.out is pointed at stderr so a stray print cannot corrupt it. */
  private static final PrintStream PROTOCOL =
      new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
  /** How long an orderly close may take before the JVM halts anyway. */
  private static final long CLOSE_BOUND_MS = 5_000;

  private final CuratorFramework client;
  private final AtomicInteger nextHandle = new AtomicInteger(1);
  private final Map<Integer, LockObject> locks = new ConcurrentHashMap<>();
  private final Map<Integer, InterProcessSemaphoreV2> semaphores = new ConcurrentHashMap<>();
  /** Leases by node name, the id the peer's caller knows them by. */
  private final Map<String, Lease> leases = new ConcurrentHashMap<>();
  private final ExecutorService pool = Executors.newCachedThreadPool(daemon("call"));

  private record LockObject(InterProcessMutex lock, ExecutorService thread) {}

  private CuratorPeer(CuratorFramework client) {
    this.client = client;
  }

  public static void main(String[] args) throws Exception {
    System.setOut(System.err);
    String connectString = args[0];
    int sessionTimeoutMs = Integer.parseInt(args[1]);
    int connectionTimeoutMs = Integer.parseInt(args[2]);
    CuratorFramework client =
        CuratorFrameworkFactory.builder()
            .connectString(connectString)
            .sessionTimeoutMs(sessionTimeoutMs)
            .connectionTimeoutMs(connectionTimeoutMs)
            .retryPolicy(new ExponentialBackoffRetry(100, 5, 1_000))
            .build();
    // "ready" follows the CONNECTED event on stdout, so the driving side sees every state in order.
    CountDownLatch connected = new CountDownLatch(1);
    client
        .getConnectionStateListenable()
        .addListener(
            (source, state) -> {
              ObjectNode event = JSON.createObjectNode().put("event", "connectionState");
              emit(event.put("state", state.name()));
              if (state.isConnected()) connected.countDown();
            });
    client.start();
    if (!connected.await(connectionTimeoutMs, TimeUnit.MILLISECONDS)) {
      emit(
          JSON.createObjectNode()
              .put("event", "failed")
              .put("message", "not connected to " + connectString + " within " + connectionTimeoutMs + " ms"));
      Runtime.getRuntime().halt(2);
    }
    long sessionId = client.getZookeeperClient().getZooKeeper().getSessionId();
    emit(
        JSON.createObjectNode()
            .put("event", "ready")
            .put("sessionId", "0x" + Long.toHexString(sessionId))
            .put("curatorVersion", mavenVersion("curator-recipes"))
            .put("zooKeeperVersion", org.apache.zookeeper.Version.getFullVersion()));
    new CuratorPeer(client).serve();
  }

  /** Reads requests until stdin ends (the driving process closed it or died), then closes the client. */
  private void serve() throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      if (line.isBlank()) continue;
      JsonNode request;
      try {
        request = JSON.readTree(line);
      } catch (Exception error) {
        System.err.println("CuratorPeer: ignoring a line that is not JSON: " + line);
        continue;
      }
      dispatch(request);
    }
    closeAndExit(null);
  }

  private void dispatch(JsonNode request) {
    int id = request.path("id").asInt();
    String op = request.path("op").asText();
    try {
      switch (op) {
        case "mutex" -> reply(id, newLock(new InterProcessMutex(client, text(request, "path"))));
        case "readWriteLock" -> {
          InterProcessReadWriteLock lock = new InterProcessReadWriteLock(client, text(request, "path"));
          ObjectNode handles = JSON.createObjectNode();
          handles.put("readLock", newLock(lock.readLock()));
          handles.put("writeLock", newLock(lock.writeLock()));
          reply(id, handles);
        }
        case "semaphore" -> {
          int handle = nextHandle.getAndIncrement();
          semaphores.put(
              handle, new InterProcessSemaphoreV2(client, text(request, "path"), integer(request, "maxLeases")));
          reply(id, handle);
        }
        case "lock.acquire" ->
            onLockThread(
                id,
                request,
                lock -> lock.acquire(integer(request, "timeoutMs"), TimeUnit.MILLISECONDS));
        case "lock.release" ->
            onLockThread(
                id,
                request,
                lock -> {
                  lock.release();
                  return null;
                });
        case "lock.isAcquiredInThisProcess" -> reply(id, lock(request).lock().isAcquiredInThisProcess());
        case "lock.participantNodes" -> {
          InterProcessMutex lock = lock(request).lock();
          onPoolThread(id, lock::getParticipantNodes);
        }
        case "semaphore.acquire" -> {
          InterProcessSemaphoreV2 semaphore = semaphore(request);
          int count = integer(request, "count");
          int timeoutMs = integer(request, "timeoutMs");
          onPoolThread(
              id,
              () -> {
                Collection<Lease> acquired = semaphore.acquire(count, timeoutMs, TimeUnit.MILLISECONDS);
                if (acquired == null) return null;
                ArrayNode ids = JSON.createArrayNode();
                for (Lease lease : acquired) {
                  leases.put(lease.getNodeName(), lease);
                  ids.add(lease.getNodeName());
                }
                return ids;
              });
        }
        case "semaphore.release" -> {
          String leaseId = text(request, "lease");
          Lease lease = leases.remove(leaseId);
          if (lease == null) throw new IllegalArgumentException("no lease " + leaseId + " is held by this peer");
          onPoolThread(
              id,
              () -> {
                lease.close();
                return null;
              });
        }
        case "semaphore.participantNodes" -> {
          InterProcessSemaphoreV2 semaphore = semaphore(request);
          onPoolThread(id, semaphore::getParticipantNodes);
        }
        case "close" -> closeAndExit(id);
        default -> throw new IllegalArgumentException("unknown op " + JSON.writeValueAsString(op));
      }
    } catch (Exception error) {
      fail(id, error);
    }
  }

  private int newLock(InterProcessMutex lock) {
    int handle = nextHandle.getAndIncrement();
    locks.put(handle, new LockObject(lock, Executors.newSingleThreadExecutor(daemon("lock-" + handle))));
    return handle;
  }

  private interface LockCall {
    Object call(InterProcessMutex lock) throws Exception;
  }

  private interface Call {
    Object call() throws Exception;
  }

  private void onLockThread(int id, JsonNode request, LockCall call) {
    LockObject lock = lock(request);
    lock.thread().execute(() -> answer(id, () -> call.call(lock.lock())));
  }

  private void onPoolThread(int id, Call call) {
    pool.execute(() -> answer(id, call));
  }

  private static void answer(int id, Call call) {
    try {
      reply(id, call.call());
    } catch (Exception error) {
      fail(id, error);
    }
  }

  private LockObject lock(JsonNode request) {
    LockObject lock = locks.get(integer(request, "handle"));
    if (lock == null) throw new IllegalArgumentException("no lock with handle " + request.path("handle"));
    return lock;
  }

  private InterProcessSemaphoreV2 semaphore(JsonNode request) {
    InterProcessSemaphoreV2 semaphore = semaphores.get(integer(request, "handle"));
    if (semaphore == null) {
      throw new IllegalArgumentException("no semaphore with handle " + request.path("handle"));
    }
    return semaphore;
  }

  /**
   * Closes the Curator client (ZooKeeper then ends the session at once and deletes its ephemeral
   * nodes), answers `id` if given, and exits. Bounded: a client that cannot reach its server must not
   * keep the JVM alive.
   */
  private void closeAndExit(Integer id) {
    Thread halt =
        daemon("halt")
            .newThread(
                () -> {
                  try {
                    Thread.sleep(CLOSE_BOUND_MS);
                  } catch (InterruptedException ignored) {
                    // exiting anyway
                  }
                  Runtime.getRuntime().halt(3);
                });
    halt.start();
    client.close();
    if (id != null) reply(id, null);
    PROTOCOL.flush();
    Runtime.getRuntime().halt(0);
  }

  private static String text(JsonNode request, String field) {
    JsonNode value = request.get(field);
    if (value == null || !value.isTextual()) throw new IllegalArgumentException(field + " must be a string");
    return value.asText();
  }

  private static int integer(JsonNode request, String field) {
    JsonNode value = request.get(field);
    if (value == null || !value.canConvertToInt() || !value.isIntegralNumber()) {
      throw new IllegalArgumentException(field + " must be a 32-bit integer");
    }
    return value.asInt();
  }

  private static void reply(int id, Object result) {
    ObjectNode reply = JSON.createObjectNode().put("id", id).put("ok", true);
    reply.set("result", JSON.valueToTree(result));
    emit(reply);
  }

  private static void fail(int id, Exception error) {
    ObjectNode reply = JSON.createObjectNode().put("id", id).put("ok", false);
    reply.putObject("error").put("type", error.getClass().getName()).put("message", String.valueOf(error.getMessage()));
    emit(reply);
  }

  private static void emit(ObjectNode line) {
    String text;
    try {
      text = JSON.writeValueAsString(line);
    } catch (Exception error) {
      throw new IllegalStateException(error);
    }
    synchronized (PROTOCOL) {
      PROTOCOL.println(text);
      PROTOCOL.flush();
    }
  }

  private static String mavenVersion(String artifact) {
    String resource = "/META-INF/maven/org.apache.curator/" + artifact + "/pom.properties";
    try (InputStream in = InterProcessMutex.class.getResourceAsStream(resource)) {
      if (in == null) return "unknown";
      Properties properties = new Properties();
      properties.load(in);
      return properties.getProperty("version", "unknown");
    } catch (Exception error) {
      return "unknown";
    }
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    AtomicInteger count = new AtomicInteger();
    return runnable -> {
      Thread thread = new Thread(runnable, name + "-" + count.incrementAndGet());
      thread.setDaemon(true);
      return thread;
    };
  }
}
