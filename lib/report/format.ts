// How the report writes its figures, in the page's tables and the charts' labels alike.

export const fmtPct = (v: number | null) => (v === null ? '–' : `${(v * 100).toFixed(2)}%`);
export const fmtL2 = (v: number | null) => (v === null ? '–' : v.toFixed(2));
/** Signed percentage points, e.g. "+12.5 pts" or "−3.1 pts". */
export const fmtGain = (v: number | null) => (v === null ? '–' : `${v > 0 ? '+' : v < 0 ? '−' : '±'}${Math.abs(v * 100).toFixed(1)} pts`);
