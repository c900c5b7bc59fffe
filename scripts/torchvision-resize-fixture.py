#!/usr/bin/env python3
"""Expected outputs of the image processor PIGG ran, for test/processor-torchvision.test.ts.

    python scripts/torchvision-resize-fixture.py > test/fixtures/torchvision-resize/expected.json

Run with transformers 4.57.6 and torchvision (PIGG's versions; ../shared/tools/transformers-env.sh makes one).
Qwen3VLProcessor.from_pretrained(..., max_pixels=1280*28*28) loads the fast image processor
(Qwen2VLImageProcessorFast), which only keeps max_pixels as an attribute and resizes by size.longest_edge; its
resize is torchvision's (torch's uint8 antialiased bicubic kernel), and rescale and normalize are fused into
(x - 127.5) / 127.5. For each case this records the grid, a SHA-256 of pixel_values (f32, little endian) and,
to keep the file small, the pixel levels (round(v * 127.5 + 127.5)) of the first rows of pixel_values (first
temporal frame) and the sum of all levels. `quirk` shows max_pixels ignored by the fast processor and obeyed by
the slow one, on a 1080x2400 screenshot.
"""
import base64
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import PIL.Image
import transformers
from transformers import AutoImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
PREPROCESS = os.path.join(HERE, "..", "test", "fixtures", "qwen3vl-tiny", "preprocess")
PREPROCESSOR_CONFIG = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255,
    "do_rescale": True, "do_normalize": True, "do_resize": True, "do_convert_rgb": True, "resample": 3,
    "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
}
CROP_ROWS = 8


def pattern(width, height):
    """A screenshot-sized test pattern test/processor-torchvision.test.ts builds the same way (no file needed)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [(x * 3 + y * 7 + c * 50 + ((x * y) >> 4)) % 256 for c in range(3)]
    return PIL.Image.fromarray(np.stack(channels, -1).astype(np.uint8))


CASES = [
    # name, source, min_pixels, max_pixels
    ("pattern_1080x2400_effective", "pattern:1080x2400", 65536, 16777216),
    ("pattern_1080x2400_intended", "pattern:1080x2400", 65536, 1280 * 28 * 28),
    ("synthetic_317x233", "synthetic_317x233.png", 65536, 16777216),
    ("smooth_150x110", "smooth_150x110.png", 65536, 16777216),
    ("synthetic_317x233_small", "synthetic_317x233.png", 4096, 16384),
]


def source(name):
    if name.startswith("pattern:"):
        width, height = map(int, name.split(":")[1].split("x"))
        return pattern(width, height)
    return PIL.Image.open(os.path.join(PREPROCESS, name)).convert("RGB")


def main():
    out = {"transformers": transformers.__version__, "cases": []}
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(PREPROCESSOR_CONFIG, f)
        for name, src, min_pixels, max_pixels in CASES:
            processor = AutoImageProcessor.from_pretrained(folder, size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
            assert type(processor).__name__ == "Qwen2VLImageProcessorFast"
            result = processor(images=[source(src)], return_tensors="pt")
            values = result["pixel_values"].numpy().astype("<f4")
            levels = np.rint(values.astype(np.float64) * 127.5 + 127.5)
            assert np.abs(levels - (values.astype(np.float64) * 127.5 + 127.5)).max() < 1e-3
            frame = levels.reshape(values.shape[0], 3, 2, 256)[:, :, 0, :]  # rows, channel, first frame, 16x16
            out["cases"].append({
                "name": name, "source": src, "minPixels": min_pixels, "maxPixels": max_pixels,
                "grid": result["image_grid_thw"][0].tolist(),
                "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
                "levelSum": int(levels.sum()),
                "cropRows": CROP_ROWS,
                "crop": base64.b64encode(frame[:CROP_ROWS].astype(np.uint8).tobytes()).decode(),
            })
        screenshot = pattern(1080, 2400)
        quirk = {}
        for fast in (True, False):
            processor = AutoImageProcessor.from_pretrained(folder, use_fast=fast, max_pixels=1280 * 28 * 28)
            quirk[type(processor).__name__] = processor(images=[screenshot], return_tensors="pt")["image_grid_thw"][0].tolist()
        out["quirk"] = {"max_pixels": 1280 * 28 * 28, "image": "1080x2400", "grid": quirk}
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
