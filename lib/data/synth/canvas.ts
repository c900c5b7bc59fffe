// SVG drawing on a 1080x2400 design grid, scaled to the canvas. Every emitted coordinate is an integer
// and attributes are written in a fixed order, so the SVG text is byte-stable.
import { escapeXml } from '../../util/xml.js';
import { GLYPHS, type ScreenName } from './catalogue.js';

export interface SynthElement {
  id: string;
  role: string;
  label: string;
  /** Whether the label is drawn on screen (a label oracle may only use visible ones). */
  labelVisible: boolean;
  icon: string;
  color: string;
  /** [x1, y1, x2, y2] in canvas pixels. */
  bbox: [number, number, number, number];
}

export interface SynthScreen {
  name: ScreenName;
  elements: SynthElement[];
  svg: string;
}

export class Canvas {
  private readonly parts: string[] = [];
  readonly elements: SynthElement[] = [];
  private readonly sx: number;
  private readonly sy: number;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.sx = width / 1080;
    this.sy = height / 2400;
  }

  x(v: number): number {
    return Math.round(v * this.sx);
  }

  y(v: number): number {
    return Math.round(v * this.sy);
  }

  size(v: number): number {
    return Math.max(1, Math.round(v * Math.min(this.sx, this.sy)));
  }

  raw(markup: string): void {
    this.parts.push(markup);
  }

  rect(x1: number, y1: number, x2: number, y2: number, fill: string, rx = 0, opacity = 1): void {
    const [X1, Y1] = [this.x(x1), this.y(y1)];
    const round = rx > 0 ? ` rx="${this.size(rx)}"` : '';
    const alpha = opacity < 1 ? ` fill-opacity="${opacity.toFixed(2)}"` : '';
    this.parts.push(
      `<rect x="${X1}" y="${Y1}" width="${this.x(x2) - X1}" height="${this.y(y2) - Y1}"${round} fill="${fill}"${alpha}/>`,
    );
  }

  circle(cx: number, cy: number, r: number, fill: string): void {
    this.parts.push(`<circle cx="${this.x(cx)}" cy="${this.y(cy)}" r="${this.size(r)}" fill="${fill}"/>`);
  }

  /** Text at baseline (x, y); the size shrinks so that roughly `room` design units hold it. */
  text(x: number, y: number, size: number, fill: string, text: string, opts: { anchor?: string; bold?: boolean; room?: number } = {}): void {
    // DejaVu Sans averages about 0.6 em per character, 0.67 em in bold.
    const em = opts.bold ? 0.67 : 0.6;
    const fitted = opts.room ? Math.min(size, opts.room / (em * Math.max(1, text.length))) : size;
    const anchor = opts.anchor ? ` text-anchor="${opts.anchor}"` : '';
    const weight = opts.bold ? ' font-weight="bold"' : '';
    this.parts.push(
      `<text x="${this.x(x)}" y="${this.y(y)}" font-family="DejaVu Sans, sans-serif" font-size="${this.size(fitted)}"${weight}${anchor} fill="${fill}">${escapeXml(text)}</text>`,
    );
  }

  glyph(name: string, cx: number, cy: number, size: number, fill: string): void {
    const d = GLYPHS[name];
    if (d === undefined) throw new Error(`unknown glyph '${name}'`);
    const px = this.size(size);
    const k = (px / 24).toFixed(3);
    this.parts.push(
      `<path d="${d}" fill="${fill}" fill-rule="evenodd" transform="translate(${this.x(cx) - Math.round(px / 2)} ${this.y(cy) - Math.round(px / 2)}) scale(${k})"/>`,
    );
  }

  element(id: string, role: string, label: string, labelVisible: boolean, icon: string, color: string, box: [number, number, number, number]): void {
    this.elements.push({
      id,
      role,
      label,
      labelVisible,
      icon,
      color,
      bbox: [this.x(box[0]), this.y(box[1]), this.x(box[2]), this.y(box[3])],
    });
  }

  svg(): string {
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}">` +
      this.parts.join('') +
      '</svg>\n'
    );
  }
}
