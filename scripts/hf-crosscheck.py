#!/usr/bin/env python3
"""The transformers side of pigg's training cross-check (test/hf-crosscheck.test.ts drives it).

    python scripts/hf-crosscheck.py JOB.json > RESULT.json

JOB.json lists tasks; every result goes to stdout as one JSON object {"versions": ..., "results": [...]}:

  {"kind": "train", "model": DIR, "batches": [inputs.safetensors, ...], "gradientAccumulation": 2,
   "learningRate": 1e-3, "warmupSteps": 2, "weightDecay": 0.01, "maxGradNorm": 1.0, "saveWeights": OUT.safetensors,
   "adapter": ADAPTER_DIR | null}
      transformers' own Trainer (create_optimizer: torch AdamW with get_decay_parameter_names grouping;
      create_scheduler: get_linear_schedule_with_warmup; clip_grad_norm_; loss / gradient_accumulation_steps),
      the vision tower and mergers frozen with requires_grad False, the micro-batches fed in the given order
      (one per dataloader item). With an adapter, peft's PeftModel.from_pretrained(base, ADAPTER_DIR,
      is_trainable=True) trains it instead (base frozen). Reports per optimizer step the loss (mean of the micro-batch losses, unrounded),
      the pre-clip gradient norm and the learning rate used; writes the trained text weights to saveWeights.
  {"kind": "logits", "model": DIR, "adapter": ADAPTER_DIR | null, "inputs": [inputs.safetensors, ...], "out": OUT}
      Qwen3VLForConditionalGeneration.from_pretrained(DIR) (+ peft PeftModel.from_pretrained(base, ADAPTER_DIR)),
      eval mode, fp32; writes logits.<k> for each input file to OUT (safetensors).

  {"kind": "bench", "model": DIR, "dtype": "fp32" | "bf16", "checkpointing": bool, "batch": BATCH.safetensors,
   "steps": 5}
      Times training steps the way bench/train-step.mjs times pigg's (one warm-up step, median of the rest;
      peak RSS from getrusage), for its transformers column.

Everything runs in fp32 on the CPU (bench: as asked). Only the fixture-style input names are used: input_ids, attention_mask,
labels, pixel_values, image_grid_thw.
"""
import contextlib
import json
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

import transformers
from transformers import Qwen3VLForConditionalGeneration, Trainer, TrainerCallback, TrainingArguments

INPUT_NAMES = ("input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw")


TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def read_batch(path, config, with_labels=True):
    tensors = load_file(path)
    names = INPUT_NAMES if with_labels else tuple(n for n in INPUT_NAMES if n != "labels")
    batch = {name: tensors[name] for name in names if name in tensors}
    if TRANSFORMERS_MAJOR >= 5 and "image_grid_thw" in batch:
        # transformers 5 takes M-RoPE's modality map from the processor: 1 on image tokens, 0 elsewhere.
        batch["mm_token_type_ids"] = (batch["input_ids"] == config.image_token_id).long()
    return batch


def load_model(path, dtype=torch.float32):
    try:
        model = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=dtype)
    except TypeError:  # transformers releases before the dtype argument
        model = Qwen3VLForConditionalGeneration.from_pretrained(path, torch_dtype=dtype)
    return model


class _Batches(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


class _RecordingTrainer(Trainer):
    """The stock Trainer, fed pre-built micro-batches in order and recording each micro-batch loss unrounded."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.micro_losses = []

    def get_train_dataloader(self):
        loader = torch.utils.data.DataLoader(self.train_dataset, batch_size=1, shuffle=False, collate_fn=lambda items: items[0])
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, *args, **kwargs):
        result = super().compute_loss(model, inputs, *args, **kwargs)
        loss = result[0] if isinstance(result, tuple) else result
        self.micro_losses.append(loss.detach().item())
        return result


class _StepRecorder(TrainerCallback):
    def __init__(self):
        self.learning_rates = []
        self.grad_norms = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.learning_rates.append(optimizer.param_groups[0]["lr"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "grad_norm" in logs:
            norm = logs["grad_norm"]
            self.grad_norms.append(float(norm.item() if hasattr(norm, "item") else norm))


def train(task):
    torch.manual_seed(0)
    model = load_model(task["model"])
    if task.get("adapter"):
        # LoRA: peft freezes the base model; only the adapter (loaded from pigg's initial one) trains.
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, task["adapter"], is_trainable=True)
    else:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not name.startswith("model.visual."))
    batches = [read_batch(path, model.config) for path in task["batches"]]
    accumulation = int(task["gradientAccumulation"])
    steps = len(batches) // accumulation
    recorder = _StepRecorder()
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=accumulation,
            max_steps=steps,
            learning_rate=task["learningRate"],
            warmup_steps=task["warmupSteps"],
            lr_scheduler_type="linear",
            weight_decay=task["weightDecay"],
            max_grad_norm=task["maxGradNorm"],
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            optim="adamw_torch",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
        )
        trainer = _RecordingTrainer(model=model, args=args, train_dataset=_Batches(batches), callbacks=[recorder])
        trainer.train()
        decay = set(trainer.get_decay_parameter_names(model))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    losses = [sum(trainer.micro_losses[k * accumulation:(k + 1) * accumulation]) / accumulation for k in range(steps)]
    if task.get("saveWeights"):
        # peft's module names carry the adapter name (lora_A.default.weight); its files do not.
        state = {name.replace(".default.", "."): p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(state, task["saveWeights"])
    return {
        "kind": "train",
        "steps": steps,
        "losses": losses,
        "microLosses": trainer.micro_losses,
        "gradNorms": recorder.grad_norms,
        "learningRates": recorder.learning_rates,
        "trainable": trainable,
        "noDecay": sorted(name for name in trainable if name not in decay),
        "modelAcceptsLossKwargs": bool(getattr(trainer, "model_accepts_loss_kwargs", False)),
    }


@torch.no_grad()
def logits(task):
    model = load_model(task["model"])
    config = model.config
    if task.get("adapter"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, task["adapter"])
    model.eval()
    out = {}
    for k, path in enumerate(task["inputs"]):
        out[f"logits.{k}"] = model(**read_batch(path, config, with_labels=False)).logits.float().contiguous()
    save_file(out, task["out"])
    return {"kind": "logits", "outputs": len(out), "peft": bool(task.get("adapter"))}


def bench(task):
    """Times training steps (forward, backward, clip_grad_norm_, torch AdamW) like bench/train-step.mjs does."""
    import resource
    import time

    model = load_model(task["model"], torch.bfloat16 if task["dtype"] == "bf16" else torch.float32)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith("model.visual."))
    if task["checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=0.0)
    batch = load_file(task["batch"])

    def step():
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with torch.no_grad():  # a tiny forward pages in the weights, as the pigg side does
        model(input_ids=batch["input_ids"][:1, :8], attention_mask=batch["attention_mask"][:1, :8], use_cache=False)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up, as the pigg side does
    times = []
    for _ in range(int(task["steps"])):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"kind": "bench", "median": times[len(times) // 2], "min": times[0], "baselineKiB": baseline,
            "peakKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries the result alone
        for task in job["tasks"]:
            results.append({"train": train, "logits": logits, "bench": bench}[task["kind"]](task))
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:
        versions["peft"] = None
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
