// Safetensors in TypeScript: for the files pigg writes from JS (preprocess output, fixture inputs read for the
// engine, results compared in tests). The native engine has its own mmap reader for model weights.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { isObject } from './util/json.js';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

export type TypedData = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  dtype: DType;
  shape: number[];
  /** F16 and BF16 are carried as raw 16-bit words. */
  data: TypedData;
}

const ELEMENT_SIZE: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, U8: 1, BOOL: 1 };

export class SafetensorsError extends Error {}

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function view(dtype: DType, bytes: Uint8Array, count: number): TypedData {
  // Copy into an aligned buffer: the data section carries no alignment guarantee.
  const copy = new Uint8Array(bytes);
  switch (dtype) {
    case 'F32': return new Float32Array(copy.buffer, 0, count);
    case 'F16':
    case 'BF16': return new Uint16Array(copy.buffer, 0, count);
    case 'I64': return new BigInt64Array(copy.buffer, 0, count);
    case 'F64': return new Float64Array(copy.buffer, 0, count);
    case 'I32': return new Int32Array(copy.buffer, 0, count);
    case 'U8':
    case 'BOOL': return copy;
  }
}

/** Parses a whole safetensors file, validating every header entry. */
export function readSafetensors(path: string): Map<string, HostTensor> {
  const file = readFileSync(path);
  const fail = (why: string): never => {
    throw new SafetensorsError(`${path}: ${why}`);
  };
  if (file.length < 8) fail(`file is ${file.length} bytes, shorter than the 8-byte header length`);
  const headerLength = file.readBigUInt64LE(0);
  if (headerLength > BigInt(file.length - 8)) fail(`header length ${headerLength} runs past the end of the file (${file.length} bytes)`);
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, dataStart)));
  } catch (error) {
    return fail(`header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isObject(header)) fail('header is not a JSON object');
  const dataSize = file.length - dataStart;
  const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  const tensors = new Map<string, HostTensor>();
  const ranges: Array<[number, number, string]> = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry !== 'object' || entry === null) fail(`tensor '${name}': header entry is not a JSON object`);
    const dtype = entry.dtype as DType;
    if (typeof entry.dtype !== 'string' || !(dtype in ELEMENT_SIZE)) fail(`tensor '${name}' has unsupported dtype ${String(entry.dtype)}`);
    if (!Array.isArray(entry.shape) || !entry.shape.every(isCount)) fail(`tensor '${name}': shape must be an array of non-negative integers`);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) fail(`tensor '${name}': data_offsets must be two non-negative integers`);
    const shape = entry.shape as number[];
    const [begin, end] = offsets as [number, number];
    const count = numel(shape);
    if (end - begin !== count * ELEMENT_SIZE[dtype]) {
      fail(`tensor '${name}': shape [${shape}] × ${dtype} needs ${count * ELEMENT_SIZE[dtype]} bytes, offsets give ${end - begin}`);
    }
    if (end > dataSize) fail(`tensor '${name}' ends at byte ${dataStart + end}, past the end of the file (${file.length})`);
    if (end > begin) ranges.push([begin, end, name]);
    tensors.set(name, { dtype, shape, data: view(dtype, file.subarray(dataStart + begin, dataStart + end), count) });
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) fail(`tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' have overlapping data_offsets`);
  }
  return tensors;
}

/** Writes tensors in sorted-name order with the header padded to 8 bytes, atomically (temp file + rename). */
export function writeSafetensors(path: string, tensors: Map<string, HostTensor> | Record<string, HostTensor>): void {
  const entries = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, tensor] of entries) {
    const bytes = numel(tensor.shape) * ELEMENT_SIZE[tensor.dtype];
    if (tensor.data.byteLength !== bytes) {
      throw new SafetensorsError(`${path}: tensor '${name}' has ${tensor.data.byteLength} bytes of data for shape [${tensor.shape}] ${tensor.dtype}`);
    }
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json, 'utf8') % 8)) % 8);  // pad the byte length, not the character count
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const temp = `${path}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w');
  try {
    writeSync(fd, prefix);
    writeSync(fd, headerBytes);
    for (const [, tensor] of entries) writeSync(fd, new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}

export function tensorF32(shape: number[], data: Float32Array): HostTensor {
  return { dtype: 'F32', shape, data };
}

export function tensorI64(shape: number[], values: ArrayLike<number>): HostTensor {
  return { dtype: 'I64', shape, data: BigInt64Array.from(Array.from(values, (v) => BigInt(v))) };
}

/** Widens any numeric tensor to a Float64 array (BF16 words decoded) for comparisons. */
export function toFloat64(tensor: HostTensor): Float64Array {
  const out = new Float64Array(tensor.data.length);
  if (tensor.dtype === 'BF16') {
    const words = tensor.data as Uint16Array;
    const scratch = new Float32Array(1);
    const bits = new Uint32Array(scratch.buffer);
    for (let i = 0; i < words.length; i++) {
      bits[0] = words[i] << 16;
      out[i] = scratch[0];
    }
    return out;
  }
  if (tensor.dtype === 'F16') throw new SafetensorsError('F16 widening is not needed by pigg');
  for (let i = 0; i < tensor.data.length; i++) out[i] = Number(tensor.data[i]);
  return out;
}
