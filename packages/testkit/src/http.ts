import { request } from 'node:http';

/**
 * One HTTP request on its own connection (no keep-alive pool, so nothing lingers after a server is killed
 * or paused); resolves with the status and parsed JSON body.
 */
export function requestJson(
  method: 'GET' | 'POST',
  url: string,
  body: unknown,
  timeoutMs: number,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const outgoing = request(url, { method, agent: false, headers: { 'content-type': 'application/json' } });
    const timer = setTimeout(() => {
      outgoing.destroy(new Error(`${method} ${url} got no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    outgoing.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    outgoing.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', () => {
        // Reported through the request's 'error' event.
      });
      response.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: response.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) });
        } catch {
          reject(
            new Error(
              `${method} ${url} answered ${response.statusCode} with non-JSON: ${text.slice(0, 200)}`,
            ),
          );
        }
      });
    });
    outgoing.end(payload);
  });
}
