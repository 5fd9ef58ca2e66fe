/**
 * Requests per minute per API key, in this process: a fixed one-minute window per key. Small and exact enough for
 * abuse control; several processes each allow the limit.
 */
export function createRateLimiter() {
  const windows = new Map<string, { start: number; count: number }>();
  return {
    /** Counts a request; returns null when allowed, else the seconds until the window opens again. */
    take(keyId: string, perMinute: number, now = Date.now()): number | null {
      if (perMinute <= 0) return null;
      let window = windows.get(keyId);
      if (!window || now - window.start >= 60_000) {
        if (windows.size > 100_000) windows.clear();
        window = { start: now, count: 0 };
        windows.set(keyId, window);
      }
      if (window.count >= perMinute) return Math.max(1, Math.ceil((window.start + 60_000 - now) / 1000));
      window.count++;
      return null;
    },
  };
}
