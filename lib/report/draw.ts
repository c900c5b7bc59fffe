// Drawing on screenshots with sharp: an SVG overlay the size of the image is composited on top and the result
// written as a PNG at the image's own size. Colours follow PIGG's visualiser: ground truth blue, prediction red,
// the tolerance region green on a hit and red on a miss.
//
// The tolerance region is the set of points a prediction may land on and still count as a hit: L2 <= 140 on the
// 0-1000 grid. The grid stretches x and y independently (x/W*1000, y/H*1000), so in pixels that region is an
// ellipse with rx = 140/1000*W and ry = 140/1000*H. PIGG's visualize_prediction.py draws a circle of radius
// 140*min(W, H)/1000 instead, which on a portrait phone screenshot is right horizontally but far too small
// vertically; we draw the region the metric actually uses.
import sharp from 'sharp';
import { writeFileAtomic } from '../atomic.js';
import { GRID, PIGG_DELTA } from '../data/metrics.js';
import type { Point } from '../data/types.js';
import { escapeXml } from '../util/xml.js';

export const GT_COLOUR = 'rgb(31,92,255)';
export const PRED_COLOUR = 'rgb(255,32,32)';
export const HIT_COLOUR = 'rgb(0,200,0)';
export const MISS_COLOUR = 'rgb(255,0,0)';

/** Pixel radii of the hit region around a grid point (see the header for why it is an ellipse). */
export function toleranceRadii(width: number, height: number, delta = PIGG_DELTA): { rx: number; ry: number } {
  return { rx: (delta * width) / GRID, ry: (delta * height) / GRID };
}

const gridToPixel = (p: Point, width: number, height: number): Point => ({ x: (p.x * width) / GRID, y: (p.y * height) / GRID });
const num = (v: number) => String(Math.round(v * 100) / 100);

/** Rough rendered width in em: wide (CJK, fullwidth) characters take a full em, the rest about 0.6. */
function emWidth(text: string): number {
  let em = 0;
  for (const ch of text) em += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 1 : 0.6;
  return em;
}

/** Cuts text to fit maxEm, ending in an ellipsis when cut. */
export function fitText(text: string, maxEm: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (emWidth(flat) <= maxEm) return flat;
  let out = '';
  for (const ch of flat) {
    if (emWidth(out + ch) > maxEm - 1) break;
    out += ch;
  }
  return `${out}…`;
}

function marker(p: Point, r: number, colour: string, label: string, font: number): string {
  const sw = Math.max(2, r / 3);
  const ticks = [
    [p.x - 2 * r, p.y, p.x - r - sw / 2, p.y],
    [p.x + r + sw / 2, p.y, p.x + 2 * r, p.y],
    [p.x, p.y - 2 * r, p.x, p.y - r - sw / 2],
    [p.x, p.y + r + sw / 2, p.x, p.y + 2 * r],
  ]
    .map(([x1, y1, x2, y2]) => `M${num(x1!)} ${num(y1!)}L${num(x2!)} ${num(y2!)}`)
    .join('');
  // A white halo under the ring and ticks keeps the marker readable on any background; the ring is hollow so
  // the element underneath stays visible, with a solid dot on the exact point.
  return (
    `<g><circle cx="${num(p.x)}" cy="${num(p.y)}" r="${num(r)}" fill="none" stroke="white" stroke-width="${num(sw + 2)}"/>` +
    `<path d="${ticks}" stroke="white" stroke-width="${num(sw + 2)}"/>` +
    `<circle cx="${num(p.x)}" cy="${num(p.y)}" r="${num(r)}" fill="none" stroke="${colour}" stroke-width="${num(sw)}"/>` +
    `<path d="${ticks}" stroke="${colour}" stroke-width="${num(sw)}"/>` +
    `<circle cx="${num(p.x)}" cy="${num(p.y)}" r="${num(Math.max(2, r / 3))}" fill="${colour}"/>` +
    `<text x="${num(p.x + 2.2 * r)}" y="${num(p.y - 1.2 * r)}" font-size="${font}" fill="${colour}" stroke="white" ` +
    `stroke-width="${num(font / 6)}" paint-order="stroke">${escapeXml(label)}</text></g>`
  );
}

export interface PredictionOverlay {
  /** Ground truth on the 0-1000 grid. */
  gt: Point;
  /** Prediction on the grid; null when the output could not be parsed (no marker, the caption says so). */
  pred: Point | null;
  hit: boolean;
  /** Caption lines, drawn in a band at the bottom (top when the ground truth sits low in the image). */
  caption: string[];
  /** Hit threshold on the grid. */
  delta?: number;
}

/** An SVG of exactly width x height pixels holding the tolerance region, both markers and the caption. */
export function predictionSvg(width: number, height: number, overlay: PredictionOverlay): string {
  const gt = gridToPixel(overlay.gt, width, height);
  const pred = overlay.pred === null ? null : gridToPixel(overlay.pred, width, height);
  const { rx, ry } = toleranceRadii(width, height, overlay.delta);
  const short = Math.min(width, height);
  const r = Math.max(5, Math.round(short * 0.015));
  const font = Math.max(11, Math.round(short * 0.03));
  const region = overlay.hit ? HIT_COLOUR : MISS_COLOUR;
  const parts = [
    `<ellipse cx="${num(gt.x)}" cy="${num(gt.y)}" rx="${num(rx)}" ry="${num(ry)}" fill="${region}" fill-opacity="0.25" ` +
      `stroke="${region}" stroke-opacity="0.9" stroke-width="2"/>`,
  ];
  if (pred) {
    parts.push(
      `<line x1="${num(gt.x)}" y1="${num(gt.y)}" x2="${num(pred.x)}" y2="${num(pred.y)}" stroke="rgb(255,212,0)" ` +
        `stroke-width="${num(Math.max(1.5, r / 4))}" stroke-dasharray="${num(r)} ${num(r / 2)}"/>`,
    );
  }
  parts.push(marker(gt, r, GT_COLOUR, 'GT', font));
  if (pred) parts.push(marker(pred, r, PRED_COLOUR, 'pred', font));
  if (overlay.caption.length > 0) {
    const line = Math.round(font * 1.3);
    const band = line * overlay.caption.length + Math.round(font * 0.6);
    const top = gt.y > height * 0.7 ? 0 : height - band;
    const maxEm = (width - font) / font;
    parts.push(`<rect x="0" y="${top}" width="${width}" height="${band}" fill="black" fill-opacity="0.65"/>`);
    overlay.caption.forEach((text, i) => {
      parts.push(
        `<text x="${num(font / 2)}" y="${top + Math.round(font * 0.3) + line * i + font}" font-size="${font}" fill="white">` +
          `${escapeXml(fitText(text, maxEm))}</text>`,
      );
    });
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="DejaVu Sans, sans-serif">${parts.join('')}</svg>`
  );
}

/** Draws the overlay on an image and writes a PNG of the image's size; returns that size. */
export async function drawPrediction(
  imageFile: string,
  overlay: PredictionOverlay,
  outFile: string,
): Promise<{ width: number; height: number }> {
  // No auto-rotation: dataset coordinates refer to the pixels as stored.
  const { width, height } = await sharp(imageFile).metadata();
  if (!width || !height) throw new Error(`${imageFile}: cannot read the image size`);
  const svg = predictionSvg(width, height, overlay);
  const png = await sharp(imageFile).composite([{ input: Buffer.from(svg), top: 0, left: 0 }]).png().toBuffer();
  await writeFileAtomic(outFile, png);
  return { width, height };
}

/** Renders a standalone SVG (e.g. a chart) to a PNG file. */
export async function writeSvgPng(svg: string, outFile: string): Promise<void> {
  await writeFileAtomic(outFile, await sharp(Buffer.from(svg)).png().toBuffer());
}
