// The decision log (decisions.jsonl) and what it tells of each user: the last decision, the sample count the last
// job was planned on (the user's pending samples come after it) and the samples quarantined after failed jobs.
import { JsonlLog } from './jsonl.js';
import type { Decision } from './types.js';

export class DecisionLedger {
  private readonly lastDecisions = new Map<string, Decision>();
  private readonly planned = new Map<string, number>();
  /** Per user, the ids of samples quarantined (Decision.quarantined). */
  private readonly quarantinedIds = new Map<string, Set<string>>();

  private constructor(private readonly log: JsonlLog<Decision>) {
    for (const decision of log.all()) this.note(decision);
  }

  /** Reads the log; `repaired` is the bytes of a torn last line cut off. */
  static async open(file: string): Promise<{ ledger: DecisionLedger; repaired: number }> {
    const { log, repaired } = await JsonlLog.open<Decision>(file);
    return { ledger: new DecisionLedger(log), repaired };
  }

  /** Appends a decision durably, then counts it. */
  async record(decision: Decision): Promise<void> {
    await this.log.append(decision);
    this.note(decision);
  }

  /** Every decision, oldest first. */
  all(): readonly Decision[] {
    return this.log.all();
  }

  last(user: string): Decision | null {
    return this.lastDecisions.get(user) ?? null;
  }

  /** The user's sample count the last job (rollbacks aside) was planned on; 0 before any. */
  trainedThrough(user: string): number {
    return this.planned.get(user) ?? 0;
  }

  /** Ids of the user's samples quarantined, never trained on again. */
  quarantined(user: string): ReadonlySet<string> {
    return this.quarantinedIds.get(user) ?? new Set();
  }

  /** The decision that promoted a version of the user (the latest such one). */
  promotion(user: string, version: number): Decision | undefined {
    return [...this.log.all()].reverse().find((d) => d.user === user && d.decision === 'promoted' && d.version === version);
  }

  private note(decision: Decision): void {
    this.lastDecisions.set(decision.user, decision);
    if (decision.quarantined?.length) {
      let ids = this.quarantinedIds.get(decision.user);
      if (!ids) this.quarantinedIds.set(decision.user, (ids = new Set()));
      for (const { id } of decision.quarantined) ids.add(id);
    }
    if (decision.decision !== 'rollback' && decision.samples) this.planned.set(decision.user, decision.samples.total);
  }
}
