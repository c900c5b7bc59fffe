// The TypeScript safetensors reader/writer (lib/safetensors.ts): exact round trips of every dtype, the on-disk
// layout (sorted names, header padded to 8, offsets packed), atomic writes, validation errors, and
// interoperability with the native engine's own reader and writer.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  readSafetensors,
  SafetensorsError,
  tensorF32,
  tensorI64,
  toFloat64,
  writeSafetensors,
  type DType,
  type HostTensor,
} from '../lib/safetensors.js';
import { native } from '../lib/engine/native.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pigg-st-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** One tensor of each dtype with awkward values (NaN, -0, extremes, negative integers). */
function everyDtype(): Record<string, HostTensor> {
  return {
    f32: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1.5, -0, NaN, Infinity, -3.4028234663852886e38, 1e-45]) },
    f16: { dtype: 'F16', shape: [4], data: Uint16Array.from([0x3c00, 0x8000, 0x7c00, 0xffff]) },
    bf16: { dtype: 'BF16', shape: [2, 2], data: Uint16Array.from([0x3f80, 0xc000, 0x7fc0, 0x0001]) },
    f64: { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -Number.MAX_VALUE, Number.MIN_VALUE]) },
    i64: { dtype: 'I64', shape: [3], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, -100n]) },
    i32: { dtype: 'I32', shape: [1, 3], data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0]) },
    u8: { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 127, 128, 255]) },
    bool: { dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([7]) },
    empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  };
}

function bytesOf(tensor: HostTensor): Buffer {
  return Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
}

/** Parses the raw layout of a file: header length, header object and data section. */
function rawLayout(path: string): { headerLength: number; header: Record<string, any>; headerText: string; data: Buffer; file: Buffer } {
  const file = readFileSync(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  const headerText = file.subarray(8, 8 + headerLength).toString('utf8');
  return { headerLength, header: JSON.parse(headerText), headerText, data: file.subarray(8 + headerLength), file };
}

/** Writes a file from a header object (padded to 8) and a data section, as a hand-made (possibly corrupt) file. */
function writeRaw(path: string, header: unknown, data: Uint8Array = new Uint8Array(0)): void {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const headerBytes = Buffer.from(text, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  writeFileSync(path, Buffer.concat([prefix, headerBytes, data]));
}

describe('round trip', () => {
  it('reproduces every dtype bit for bit, with shapes and dtypes', () => {
    const path = join(dir, 'all.safetensors');
    const tensors = everyDtype();
    writeSafetensors(path, tensors);
    const back = readSafetensors(path);
    expect([...back.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, tensor] of Object.entries(tensors)) {
      const got = back.get(name)!;
      expect(got.dtype, name).toBe(tensor.dtype);
      expect(got.shape, name).toEqual(tensor.shape);
      expect(got.data.constructor, name).toBe(tensor.data.constructor);
      expect(got.data.length, name).toBe(tensor.data.length);
      expect(bytesOf(got).equals(bytesOf(tensor)), name).toBe(true);
    }
    // Values survive, not only bytes: spot checks through the typed views and toFloat64.
    expect((back.get('i64')!.data as BigInt64Array)[0]).toBe(-(2n ** 63n));
    expect(Object.is((back.get('f32')!.data as Float32Array)[1], -0)).toBe(true);
    expect(Array.from(toFloat64(back.get('bf16')!))).toEqual([1, -2, NaN, 9.183549615799121e-41]);
    expect(Array.from(toFloat64(back.get('i32')!))).toEqual([-(2 ** 31), 2 ** 31 - 1, 0]);
  });

  it('reads tensors whose data is not aligned in the file (odd-sized U8 before F64)', () => {
    const path = join(dir, 'unaligned.safetensors');
    writeSafetensors(path, {
      a: { dtype: 'U8', shape: [3], data: Uint8Array.from([9, 8, 7]) },
      b: { dtype: 'F64', shape: [2], data: Float64Array.from([0.1, -2.5]) },
    });
    const back = readSafetensors(path);
    expect(rawLayout(path).header.b.data_offsets).toEqual([3, 19]);
    expect(Array.from(back.get('b')!.data as Float64Array)).toEqual([0.1, -2.5]);
    expect(Array.from(back.get('a')!.data as Uint8Array)).toEqual([9, 8, 7]);
  });

  it('accepts a Map as well as a record, and subarray views (byteOffset != 0)', () => {
    const path = join(dir, 'map.safetensors');
    const big = Float32Array.from([0, 1, 2, 3, 4, 5]);
    writeSafetensors(path, new Map([['x', tensorF32([2], big.subarray(3, 5))], ['ids', tensorI64([2], [5, -6])]]));
    const back = readSafetensors(path);
    expect(Array.from(back.get('x')!.data as Float32Array)).toEqual([3, 4]);
    expect(Array.from(back.get('ids')!.data as BigInt64Array)).toEqual([5n, -6n]);
    expect(statSync(path).size).toBe(8 + rawLayout(path).headerLength + 8 + 16);
  });

  it('the native engine reads what TS wrote, and TS reads what the native engine wrote', async () => {
    const tensors = everyDtype();
    delete tensors.f16; // the engine reads F16, but keep the set to types with exact JS views on both sides
    const tsPath = join(dir, 'ts-written.safetensors');
    writeSafetensors(tsPath, tensors);
    const fromNative = await native().readTensors(tsPath);
    for (const [name, tensor] of Object.entries(tensors)) {
      expect(fromNative[name].dtype, name).toBe(tensor.dtype);
      expect(fromNative[name].shape, name).toEqual(tensor.shape);
      expect(bytesOf(fromNative[name]).equals(bytesOf(tensor)), name).toBe(true);
    }
    const nativePath = join(dir, 'native-written.safetensors');
    await native().writeTensors(nativePath, tensors);
    const back = readSafetensors(nativePath);
    for (const [name, tensor] of Object.entries(tensors)) {
      expect(back.get(name)!.dtype, name).toBe(tensor.dtype);
      expect(back.get(name)!.shape, name).toEqual(tensor.shape);
      expect(bytesOf(back.get(name)!).equals(bytesOf(tensor)), name).toBe(true);
    }
    const layout = rawLayout(nativePath);
    expect(layout.headerLength % 8).toBe(0);
    expect(Object.keys(layout.header).filter((k) => k !== '__metadata__')).toEqual(Object.keys(tensors).sort());
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('layout', () => {
  it('stores tensors in sorted-name order with packed, increasing data_offsets', () => {
    const path = join(dir, 'sorted.safetensors');
    writeSafetensors(path, {
      zeta: tensorF32([1], Float32Array.from([1])),
      alpha: tensorI64([2], [1, 2]),
      'Beta.9': tensorF32([3], Float32Array.from([1, 2, 3])),
      'beta.10': { dtype: 'U8', shape: [1], data: Uint8Array.from([1]) },
    });
    const { header, headerText, data } = rawLayout(path);
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    // Byte order (as Python's sorted()), so upper case sorts first.
    expect(names).toEqual(['Beta.9', 'alpha', 'beta.10', 'zeta']);
    expect(headerText.indexOf('"Beta.9"')).toBeLessThan(headerText.indexOf('"alpha"'));
    expect(names.map((n) => header[n].data_offsets)).toEqual([[0, 12], [12, 28], [28, 29], [29, 33]]);
    expect(data.length).toBe(33);
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header.alpha).toEqual({ dtype: 'I64', shape: [2], data_offsets: [12, 28] });
  });

  it('pads the header with spaces to a multiple of 8 for every name length', () => {
    for (let n = 1; n <= 8; n++) {
      const path = join(dir, `pad${n}.safetensors`);
      writeSafetensors(path, { ['x'.repeat(n)]: tensorF32([1], Float32Array.from([n])) });
      const { headerLength, headerText, file } = rawLayout(path);
      expect(headerLength % 8, `name length ${n}`).toBe(0);
      expect(headerText).toMatch(/^\{.*\} *$/);
      expect(headerText.trimEnd().length).toBeGreaterThan(headerLength - 8);
      expect(file.readFloatLE(8 + headerLength)).toBe(n);
    }
  });

  it('writes an empty tensor set as a valid file', () => {
    const path = join(dir, 'none.safetensors');
    writeSafetensors(path, {});
    expect(readSafetensors(path).size).toBe(0);
    expect(rawLayout(path).headerLength % 8).toBe(0);
  });
});

describe('atomic write', () => {
  it('leaves no temp file and replaces an existing file by rename', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'out.safetensors');
    writeSafetensors(path, { a: tensorF32([1], Float32Array.from([1])) });
    const firstInode = statSync(path).ino;
    writeSafetensors(path, { b: tensorF32([2], Float32Array.from([2, 3])) });
    expect(readdirSync(sub)).toEqual(['out.safetensors']);
    expect(statSync(path).ino).not.toBe(firstInode);
    const back = readSafetensors(path);
    expect([...back.keys()]).toEqual(['b']);
  });

  it('rejects data that does not fit the shape before creating anything', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'bad.safetensors');
    expect(() => writeSafetensors(path, { w: tensorF32([2, 2], Float32Array.from([1, 2, 3])) })).toThrow(SafetensorsError);
    expect(() => writeSafetensors(path, { w: tensorF32([2, 2], Float32Array.from([1, 2, 3])) })).toThrow(
      `${path}: tensor 'w' has 12 bytes of data for shape [2,2] F32`,
    );
    expect(readdirSync(sub)).toEqual([]);
  });

  it('keeps the previous file intact when a write is rejected', () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'keep.safetensors');
    writeSafetensors(path, { a: tensorF32([1], Float32Array.from([42])) });
    expect(() => writeSafetensors(path, { a: { dtype: 'I64', shape: [2], data: new BigInt64Array(1) } })).toThrow(/tensor 'a'/);
    expect(Array.from(readSafetensors(path).get('a')!.data as Float32Array)).toEqual([42]);
    expect(readdirSync(sub)).toEqual(['keep.safetensors']);
  });

  it('fails with the OS error when the folder does not exist, leaving nothing behind', () => {
    const path = join(dir, 'no-such-folder', 'x.safetensors');
    expect(() => writeSafetensors(path, { a: tensorF32([1], Float32Array.from([1])) })).toThrow(/ENOENT/);
  });
});

describe('validation errors', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'I64', shape: [1], data_offsets: [8, 16] } };
  const goodData = new Uint8Array(16);

  function expectError(name: string, build: (path: string) => void, message: RegExp | string): void {
    const path = join(dir, `${name}.safetensors`);
    build(path);
    let caught: unknown;
    try {
      readSafetensors(path);
    } catch (error) {
      caught = error;
    }
    expect(caught, name).toBeInstanceOf(SafetensorsError);
    const text = (caught as Error).message;
    expect(text.startsWith(`${path}: `), text).toBe(true);
    if (typeof message === 'string') expect(text).toContain(message);
    else expect(text).toMatch(message);
  }

  it('accepts the hand-made reference file', () => {
    const path = join(dir, 'good.safetensors');
    writeRaw(path, good, goodData);
    const back = readSafetensors(path);
    expect(back.get('a')!.shape).toEqual([2]);
    expect(back.get('b')!.dtype).toBe('I64');
  });

  it('rejects a file shorter than the 8-byte length', () => {
    expectError('tiny', (p) => writeFileSync(p, Buffer.from([1, 2, 3])), 'file is 3 bytes, shorter than the 8-byte header length');
    expectError('empty', (p) => writeFileSync(p, Buffer.alloc(0)), 'file is 0 bytes');
  });

  it('rejects a header length running past the end of the file', () => {
    expectError('headerlen', (p) => {
      writeRaw(p, good, goodData);
      const file = readFileSync(p);
      file.writeBigUInt64LE(BigInt(file.length));
      writeFileSync(p, file);
    }, /header length \d+ runs past the end of the file \(\d+ bytes\)/);
    expectError('headerlen-huge', (p) => {
      writeRaw(p, good, goodData);
      const file = readFileSync(p);
      file.writeBigUInt64LE(2n ** 64n - 1n);
      writeFileSync(p, file);
    }, 'header length 18446744073709551615 runs past the end of the file');
  });

  it('rejects a header that is not JSON or not UTF-8', () => {
    expectError('notjson', (p) => writeRaw(p, '{"a": {"dtype": "F32", ', goodData), 'header is not valid UTF-8 JSON');
    expectError('badutf8', (p) => {
      writeRaw(p, { __metadata__: { note: 'XX' }, ...good }, goodData);
      const file = readFileSync(p);
      const at = file.indexOf('XX');
      file[at] = 0xff; // a lone 0xff byte can never appear in UTF-8
      writeFileSync(p, file);
    }, 'header is not valid UTF-8 JSON');
  });

  it('rejects an unsupported dtype, naming the tensor', () => {
    expectError('dtype', (p) => writeRaw(p, { ...good, a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 8] } }, goodData),
      "tensor 'a' has unsupported dtype F8_E4M3");
  });

  it('rejects shape and data_offsets that disagree, naming the tensor and both sizes', () => {
    expectError('shape', (p) => writeRaw(p, { ...good, a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, goodData),
      "tensor 'a': shape [3] × F32 needs 12 bytes, offsets give 8");
    expectError('offsets-reversed', (p) => writeRaw(p, { ...good, b: { dtype: 'I64', shape: [1], data_offsets: [16, 8] } }, goodData),
      "tensor 'b': shape [1] × I64 needs 8 bytes, offsets give -8");
  });

  it('rejects a tensor past the end of the data (truncated file), naming it', () => {
    expectError('truncated', (p) => writeRaw(p, good, goodData.subarray(0, 12)), /tensor 'b' ends at byte \d+, past the end of the file \(\d+\)/);
    expectError('out-of-range', (p) => writeRaw(p, { ...good, a: { dtype: 'F32', shape: [2], data_offsets: [100, 108] } }, goodData),
      "tensor 'a' ends at byte");
  });

  it('reports a missing file with its path', () => {
    expect(() => readSafetensors(join(dir, 'missing.safetensors'))).toThrow(/ENOENT.*missing\.safetensors/);
  });
});

describe('helpers', () => {
  it('tensorI64 / tensorF32 build tensors the writer accepts', () => {
    const ids = tensorI64([2, 2], [1, 2, 3, 4]);
    expect(ids).toEqual({ dtype: 'I64', shape: [2, 2], data: BigInt64Array.from([1n, 2n, 3n, 4n]) });
    const f = tensorF32([1], Float32Array.from([0.5]));
    expect(f.dtype).toBe('F32');
  });

  it('toFloat64 decodes BF16 words and widens integers; F16 is refused', () => {
    const bf16: HostTensor = { dtype: 'BF16', shape: [3], data: Uint16Array.from([0x3f80, 0x4049, 0xff80]) };
    expect(Array.from(toFloat64(bf16))).toEqual([1, 3.140625, -Infinity]);
    expect(Array.from(toFloat64(tensorI64([2], [-5, 9])))).toEqual([-5, 9]);
    const f16: HostTensor = { dtype: 'F16' as DType, shape: [1], data: Uint16Array.from([0x3c00]) };
    expect(() => toFloat64(f16)).toThrow(SafetensorsError);
  });
});
