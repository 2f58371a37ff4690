// Small helpers of the components.

import { useEffect, useReducer } from "preact/hooks";
import type { Model } from "./model.js";

/** Re-renders the component whenever the model changes. */
export function useModel(model: Model): void {
  const [, tick] = useReducer((n: number) => n + 1, 0);
  useEffect(() => model.subscribe(() => tick(undefined)), [model]);
}

/** Hours and minutes of a time. */
export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** The day of a time, as a separator says it. */
export function day(ms: number): string {
  const date = new Date(ms);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (date.toDateString() === today.toDateString()) return "Today";
  if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
  return date.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

/** A byte count as people read it. */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
