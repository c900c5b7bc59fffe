// `pigg preprocess`: one image through the Qwen3-VL image processor, written as pixel_values + image_grid_thw.
import type { Command } from 'commander';
import { PATCH_DIM, processImage, QWEN3_VL_PIXELS, type Resampler } from '../processor/image.js';
import { tensorF32, tensorI64, writeSafetensors } from '../safetensors.js';
import { action, choiceOption, integerOption } from './common.js';

interface PreprocessOptions {
  minPixels: number;
  maxPixels: number;
  resampler: Resampler;
  out: string;
}

export function register(program: Command): void {
  program
    .command('preprocess')
    .description('run the Qwen3-VL image processor on one image and write pixel_values (F32 [n,1536]) and image_grid_thw (I64 [1,3])')
    .argument('<image>', 'PNG, JPEG or WebP file')
    .option('--min-pixels <n>', 'smart_resize minimum area', integerOption('--min-pixels', 1), QWEN3_VL_PIXELS.minPixels)
    .option('--max-pixels <n>', 'smart_resize maximum area', integerOption('--max-pixels', 1), QWEN3_VL_PIXELS.maxPixels)
    .option('--resampler <name>', "'pillow' (bit-exact with PIL BICUBIC) or 'sharp' (libvips)", choiceOption('--resampler', ['pillow', 'sharp'] as const), 'pillow')
    .requiredOption('--out <file>', 'output .safetensors file')
    .action(
      action(async (image: string, options: PreprocessOptions) => {
        const processed = await processImage(image, { minPixels: options.minPixels, maxPixels: options.maxPixels, resampler: options.resampler });
        const rows = processed.pixelValues.length / PATCH_DIM;
        writeSafetensors(options.out, {
          pixel_values: tensorF32([rows, PATCH_DIM], processed.pixelValues),
          image_grid_thw: tensorI64([1, 3], processed.gridThw),
        });
        const { width, height } = processed.resizedSize;
        process.stdout.write(`${image}: ${processed.sourceSize.width}x${processed.sourceSize.height} -> ${width}x${height}, grid ${processed.gridThw.join('x')}, ${processed.numImageTokens} image tokens -> ${options.out}\n`);
      }),
    );
}
