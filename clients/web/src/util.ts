// Small helpers of the components.

import { useEffect, useReducer } from "preact/hooks";
import type { Model } from "./model.js";

/** Re-renders the component whenever the model changes. */
export function useModel(model: Model): void {
  const [, tick] = useReducer((n: number) => n + 1, 0);
  useEffect(() => model.subscribe(() => tick(undefined)), [model]);
}

// Formatters made once: making one costs far more than using it, and a chat formats a time
// for every message.
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DATE = new Intl.DateTimeFormat(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
const DAY_MS = 24 * 60 * 60 * 1000;

/** Hours and minutes of a time. */
export function clock(ms: number): string {
  return TIME.format(ms);
}

/** The local day of a time, as a number that changes at midnight. */
export function dayNumber(ms: number): number {
  return Math.floor((ms - new Date(ms).getTimezoneOffset() * 60_000) / DAY_MS);
}

/** The day of a time, as a separator says it, seen on day `today` (a `dayNumber`). */
export function day(ms: number, today: number): string {
  const then = dayNumber(ms);
  if (then === today) return "Today";
  if (then === today - 1) return "Yesterday";
  return DATE.format(ms);
}

/** A byte count as people read it. */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The first letter of a name, for its avatar. */
export function initial(name: string): string {
  return (name.trim()[0] ?? "?").toUpperCase();
}
