#!/usr/bin/env python3
"""Expected outputs of PIGG's answer parser and metric for test/pigg-exact.test.ts.

    python scripts/pigg-parse-fixture.py > test/fixtures/pigg-parse/expected.json
    python scripts/pigg-parse-fixture.py --score RUN.json     # PIGG's numbers for a pigg eval run's outputs

RUN.json is {"users": {USER: {"outputs": [answer text, ...], "gt": [[x, y], ...]}}}; --score prints per user
PIGG's parse of each output (decoded with the prompt, as its eval_user parses it) and evaluate_coordinates.

`parse_inference` and `evaluate_coordinates` below are transcriptions of PIGG's src/utils/eval.py
(github.com/hoonably/PIGG), kept as PIGG runs them: pigg's PIGG-exact evaluation must give the same
(content, x, y) for every answer text and the same per-user numbers as PIGG's results.txt.

The corpus holds answers as Qwen3-VL writes them and the texts where PIGG's parser and pigg's robust one part:
out-of-range and negative numbers, decimals, boxes (PIGG keeps the first corner), unclosed blocks, JSON points,
click(...), bare pairs, full-width and other Unicode digits, Python-only whitespace, and "assistant" inside
an answer. `metric` scores each user's answers against their ground truths as PIGG's eval_user does (the model's
output is decoded with the prompt, then parsed with is_gt=False).
"""
import json
import re
import sys

import numpy as np


def parse_inference(text, is_gt=True):
    if not is_gt:
        text = text.split("assistant")[-1]
    referring_match = re.findall(r'```referring\n(.*?)\n```', text, re.DOTALL)
    content = referring_match[-1] if referring_match else "None"
    x = y = 0
    if 'grounding' in text:
        blocks = text.split('```grounding')
    else:
        blocks = [text]
    if len(blocks) > 1:
        for block in blocks[1:]:
            if '```' in block:
                block_content = block.split('```')[0]
                patterns = [
                    r'\(?(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\)?',
                    r'\(?(\d+)\s*,\s*(\d+)\)?\s*to\s*\(?(\d+)\s*,\s*(\d+)\)?',
                    r'(?:Top-left|Bottom-right)[^:]*:\s*\(?(\d+)\s*,\s*(\d+)\)?',
                    r'\[?(\d+)\s*,\s*(\d+)\]?',
                    r'\(?(\d+)\s*,\s*(\d+)\)?',
                ]
                for pattern in patterns:
                    match = re.search(pattern, block_content)
                    if match:
                        nums = [int(g) for g in match.groups() if g and g.isdigit()]
                        if len(nums) >= 2:
                            x, y = nums[0], nums[1]
                        break
                break
    return content, x, y


def evaluate_coordinates(pred_coords, gt_coords, delta=140):
    pred_coords = np.array(pred_coords)
    gt_coords = np.array(gt_coords)
    distances = np.linalg.norm(pred_coords - gt_coords, axis=1)
    return {
        "click_accuracy": float(np.mean(distances <= delta)),
        "mean_l2_error": float(np.mean(distances)),
        "median_l2_error": float(np.median(distances)),
    }


def grounding(body, referring=None):
    block = f"```grounding\n{body}\n```"
    return block if referring is None else f"```referring\n{referring}\n```\n{block}"


CORPUS = [
    # Answers as PIGG's format asks for them.
    grounding("[311, 541]", "blue plus button"),
    grounding("(120, 45)", '"left arrow"'),
    grounding("[40, 4085]", "Settings"),
    grounding("[500, 1100]", "Wi-Fi tile"),
    grounding("[1000, 1000]"),
    grounding("[0, 0]", "nothing"),
    # Numbers pigg's robust parser reads differently.
    grounding("[-12, 340]"),
    grounding("[-12, -340]"),
    grounding("[311.7, 541.2]"),
    grounding("[0.25, 0.75]"),
    grounding("[+15, 30]"),
    grounding("[12，34]"),
    # Boxes: PIGG keeps the first corner.
    grounding("(100, 200, 300, 400)", "box"),
    grounding("[100, 200, 300, 400]"),
    grounding("(10, 20) to (30, 40)"),
    grounding("Top-left corner: (15, 25), Bottom-right corner: (35, 45)"),
    grounding("Bottom-right: [70, 80]"),
    # Unclosed or missing blocks.
    "```grounding\n[311, 541]",
    "```referring\nsearch bar\n```\n```grounding\n[210, 98]",
    "grounding: [311, 541]",
    "```grounding\nno idea\n```\n```grounding\n[1, 2]\n```",
    "```grounding [5, 6]```",
    "```grounding [1, 2] ```grounding\n[3, 4]\n```",
    "```grounding\n[1, 2] grounding ```grounding\n[3, 4]\n```",
    # Other formats: JSON points, tool calls, click(), bare pairs.
    '```json\n[\n\t{"point_2d": [455, 128], "label": "the Wi-Fi tile"}\n]\n```',
    '{"bbox_2d": [10, 20, 30, 40], "label": "x"}',
    '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [612, 233]}}\n</tool_call>',
    "click(start_box='(388, 772)')",
    "(455, 128)",
    "The element is at [455, 128].",
    # Digits and whitespace outside ASCII.
    grounding("[３１１, ５４１]"),
    grounding("[٣١١, ٥٤١]"),
    grounding("[311,\x1c541]"),
    grounding("[311,\x85541]"),
    grounding("[311,\ufeff541]"),
    grounding("[311,\u3000541]"),
    # Several blocks, empty and odd referrings.
    "```referring\na\n```\n```referring\nb\n```\n```grounding\n7, 8\n```",
    "```referring\n\n```\n```grounding\n[9, 10]\n```",
    "```referring\nline one\nline two\n```\n```grounding\n[11, 12]\n```",
    "```referring\r\nwindows\r\n```\r\n```grounding\r\n[13, 14]\r\n```",
    grounding("[15, 16]\n[17, 18]"),
    grounding("x=20, y=30"),
    grounding("(25,35)"),
    grounding("[ 45 , 55 ]"),
    grounding("[7]"),
    "",
    "I cannot find it.",
]

# Model outputs as PIGG's eval decodes them (skip_special_tokens, prompt included): the parser keeps what follows
# the last "assistant".
PROMPT = ("system\nYou are a helpful assistant.\nuser\nGiven a GUI image, what are the relative (0-1000) pixel point "
          "coordinates for the element corresponding to the following instruction: Open settings\n\n### Output (Example)\n"
          "```referring\n\"left arrow\"\n```\n```grounding\n(100, 200)\n```\nassistant\n")
OUTPUTS = [
    PROMPT + grounding("[120, 45]", "gear icon"),
    PROMPT + grounding("[500, 600]", "Google Assistant icon"),
    PROMPT + grounding("[500, 600]", "the assistant button"),
    PROMPT + "assistant: " + grounding("[1, 2]"),
    PROMPT + "no answer",
]

# Two users' answers and ground truths for the metric (PIGG's per-user results.txt numbers).
USERS = {
    "1": [(grounding("[40, 4085]", "a"), [40, 950]), (grounding("[500, 1100]", "b"), [500, 950]),
          (grounding("[311, 541]", "c"), [300, 560]), ("no answer", [120, 880]),
          (grounding("[-12, 340]"), [10, 340]), (grounding("(100, 200, 300, 400)"), [200, 300])],
    "2": [(grounding("[311.7, 541.2]"), [311, 541]), (grounding("[３１１, ５４１]"), [311, 541]),
          (grounding("(10, 20) to (30, 40)"), [20, 30]), ("(455, 128)", [455, 128]),
          (grounding("[700, 700]"), [700, 841]), (grounding("[700, 700]"), [700, 839])],
}


def score(path):
    with open(path) as f:
        run = json.load(f)
    out = {}
    for user, item in run["users"].items():
        preds = [parse_inference("assistant\n" + text, is_gt=False)[1:] for text in item["outputs"]]
        out[user] = {"pred": preds, **evaluate_coordinates(preds, item["gt"])}
    json.dump(out, sys.stdout)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--score":
        return score(sys.argv[2])
    def row(text, is_gt):
        content, x, y = parse_inference(text, is_gt)
        return {"text": text, "is_gt": is_gt, "content": content, "x": x, "y": y}

    cases = [row(t, True) for t in CORPUS] + [row(t, False) for t in CORPUS] + [row(t, False) for t in OUTPUTS]
    metric = {}
    for user, items in USERS.items():
        preds = [parse_inference("assistant\n" + answer, is_gt=False)[1:] for answer, _ in items]
        metric[user] = {"answers": [a for a, _ in items], "gt": [g for _, g in items], "pred": preds,
                        **evaluate_coordinates(preds, [g for _, g in items])}
    json.dump({"cases": cases, "metric": metric}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
