// The canonical sample record ("gg-sample/1", one JSON object per line of manifest.jsonl).
// Coordinates are in source pixels; the 0-1000 grid is derived at prompt time.

export interface Point {
  x: number;
  y: number;
}

export interface Sample {
  id: string;
  source: string;
  user: string;
  episode: string;
  step: number;
  /** Path relative to the dataset directory. */
  image: string;
  width: number;
  height: number;
  instruction: string;
  referring: string | null;
  action_type?: string;
  target: Point;
  /** [x1, y1, x2, y2] in source pixels. */
  bbox?: [number, number, number, number] | null;
  bbox_source?: string | null;
  history?: string[];
  context?: Record<string, unknown>;
  meta?: Record<string, unknown>;
}

export interface DatasetInfo {
  schema: 'gg-sample/1';
  name: string;
  source: string;
  created_by: string;
  coord_space: 'pixel';
  users: string[];
  counts: Record<string, number>;
  notes?: string;
}
