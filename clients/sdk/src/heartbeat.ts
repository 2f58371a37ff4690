// The smart heartbeat (docs/protocol.md §5.4, after WeChat's Mars): start at the server's
// safe interval, prove each interval twice, then probe one step longer, up to the server's
// maximum; an unanswered PING sends the interval back to the last one proven, or one step
// below a proven one that failed, and the client settles there until its network changes.

/** The range the server named in AUTH (seconds); `min` and `max` are 0 from a server that
 * names none, which keeps the interval fixed. */
export interface Advertised {
  startS: number;
  minS: number;
  maxS: number;
}

/** How much longer each probe is, in seconds. */
export const STEP_S = 30;
/** Proofs of an interval in a row before the next probe. */
export const PROOFS_BEFORE_PROBE = 2;
/** How long a heartbeat PING's answer may take before the link counts as forgotten. */
export const ANSWER_TIMEOUT_MS = 10_000;

export class HeartbeatPolicy {
  private intervalS: number;
  private goodS: number;
  private proofs = 0;
  private settled: boolean;
  private readonly minS: number;
  private readonly maxS: number;

  constructor(advertised: Advertised) {
    const start = Math.max(1, advertised.startS || 30);
    this.intervalS = start;
    this.goodS = start;
    this.minS = advertised.minS > 0 ? Math.min(advertised.minS, start) : start;
    this.maxS = advertised.maxS > 0 ? Math.max(advertised.maxS, start) : start;
    // A server that names no range takes no other interval.
    this.settled = this.maxS === start;
  }

  /** How long to wait before the next PING, in seconds. */
  get interval(): number {
    return this.intervalS;
  }

  /** The interval proven to survive the network path. */
  get good(): number {
    return this.goodS;
  }

  get isSettled(): boolean {
    return this.settled;
  }

  /** The interval the client will wait next if the coming PING is answered: what that PING
   * tells the server. */
  nextIfAnswered(): number {
    if (this.settled || this.proofs + 1 < PROOFS_BEFORE_PROBE || this.intervalS >= this.maxS) {
      return this.intervalS;
    }
    return Math.min(this.maxS, this.intervalS + STEP_S);
  }

  /** The PING sent after waiting `interval` was answered. */
  answered(): void {
    const next = this.nextIfAnswered();
    this.goodS = Math.max(this.goodS, this.intervalS);
    this.proofs = next === this.intervalS ? this.proofs + 1 : 0;
    this.intervalS = next;
  }

  /** The PING sent after waiting `interval` went unanswered: the path forgot the link. */
  unanswered(): void {
    this.proofs = 0;
    if (this.intervalS > this.goodS) {
      this.intervalS = this.goodS;
    } else {
      this.goodS = Math.max(this.minS, this.goodS - STEP_S);
      this.intervalS = this.goodS;
    }
    this.settled = true;
  }

  /** Which interval the server put in force (its answer's); a server clamps what it is told. */
  confirmed(intervalS: number): void {
    if (intervalS > 0 && intervalS < this.intervalS) {
      this.intervalS = intervalS;
      this.settled = true;
    }
  }
}

/**
 * Keeps a link's heartbeat: waits the policy's interval, sends a PING naming the interval it
 * will wait next (`ping` resolves with the interval the server put in force), and learns from
 * the answer. Resolves when a PING goes unanswered (`ping` rejects: the path forgot the link,
 * which the caller then closes) or when `sleep` says the link is gone (resolves true).
 */
export async function keepHeartbeat(
  policy: HeartbeatPolicy,
  ping: (nextS: number) => Promise<number>,
  sleep: (ms: number) => Promise<boolean>,
): Promise<void> {
  for (;;) {
    if (await sleep(policy.interval * 1000)) return;
    try {
      const inForce = await ping(policy.nextIfAnswered());
      policy.answered();
      policy.confirmed(inForce);
    } catch {
      policy.unanswered();
      return;
    }
  }
}
