/**
 * What one live tail wants: the same filters as a search (device_id, level,
 * q), applied in JS to the logs of each stream frame. A q term matches a
 * message that contains it, case-insensitively, as the search's ILIKE does.
 */
import type { FrameLog, Tally } from '../queue/frame';

export interface TailFilterSpec {
  device_id?: string;
  level?: string[];
  /** parseSearchText's terms */
  terms?: string[];
}

export class TailFilter {
  /** equal for equal filters: tails that share it share each frame's serialized message */
  readonly key: string;
  /** the one device it follows, if any */
  readonly device: string | undefined;
  private readonly levels: Set<string> | undefined;
  private readonly terms: string[];

  constructor(spec: TailFilterSpec) {
    this.device = spec.device_id;
    this.levels = spec.level?.length ? new Set(spec.level) : undefined;
    this.terms = (spec.terms ?? []).map((t) => t.toLowerCase());
    this.key = JSON.stringify([this.device ?? null, this.levels ? [...this.levels].sort() : null, [...this.terms].sort()]);
  }

  takesLevel(level: string): boolean {
    return !this.levels || this.levels.has(level);
  }

  /** Whether a frame with these tallies can hold a log this filter takes (before its rows are decoded). */
  wants(tallies: Tally[]): boolean {
    if (!this.device && !this.levels) return true;
    for (const t of tallies) {
      if ((!this.device || t[0] === this.device) && this.takesLevel(t[1])) return true;
    }
    return false;
  }

  matches(log: FrameLog): boolean {
    if (this.device && log.device_id !== this.device) return false;
    if (!this.takesLevel(log.log_level)) return false;
    if (!this.terms.length) return true;
    const message = log.message.toLowerCase();
    return this.terms.every((t) => message.includes(t));
  }
}
