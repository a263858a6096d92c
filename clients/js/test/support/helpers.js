// Shared test helpers. Tests never sleep to wait for something: they await a promise or an
// event, bounded by a deadline so a bug fails the test instead of hanging it.

const td = new TextDecoder();

/** Resolves/rejects with `promise`, or rejects if it takes longer than `ms`. */
export function within(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline: ${what || 'operation'} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The next `event` of an emitter with `on`/`off` (Connection) that satisfies `pred`. */
export function nextEvent(emitter, event, pred = () => true) {
  return new Promise((resolve) => {
    const fn = (arg) => {
      if (!pred(arg)) return;
      emitter.off(event, fn);
      resolve(arg);
    };
    emitter.on(event, fn);
  });
}

/** Text of a frame (string or bytes). */
export function frameText(f) {
  return typeof f === 'string' ? f : td.decode(f);
}

/** A deterministic PRNG (mulberry32). */
export function prng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
