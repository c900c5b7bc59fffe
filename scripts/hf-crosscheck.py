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
  {"kind": "bench", "model": DIR, "dtype": "fp32" | "bf16", "device": "cpu" | "cuda", "checkpointing": bool,
   "batches": [micro.safetensors, ...], "steps": 5, "warmup": 1, "learningRate": 1e-5,
   "lora": {"r": 8, "alpha": 32, "dropout": 0.1, "targets": [...]} | null}
      bench/gpu.mjs's training step: the micro-batches of one optimizer step (loss / their count, as the Trainer's
      gradient accumulation), clip_grad_norm_(1.0), torch AdamW (foreach default; the Trainer's decay grouping,
      0.01), HF gradient checkpointing (gradient_checkpointing_enable, non-reentrant), vision tower and mergers
      frozen, weights in `dtype` (bf16 = bf16 weights and moments, pigg's "pure"); with lora, peft's
      get_peft_model (base frozen, adapter weights fp32 as peft keeps them). Reports the step times, the
      trainable parameter count, the loss of each step and peak memory (CUDA: torch.cuda.max_memory_allocated;
      CPU: peak RSS, VmHWM).
  {"kind": "bench_generate", "model": DIR, "dtype": ..., "device": ..., "prompts": {"click": B1.safetensors,
   "eval": BN.safetensors}, "maxNewTokens": 20, "runs": 5, "warmup": 1}
      Greedy generate (do_sample=False, min_new_tokens = max_new_tokens, so every run decodes exactly that many
      tokens) on left-padded prompts: median seconds per call for "click" with maxNewTokens and with 1 new token
      (prefill), and for "eval"; peak memory as above.
  {"kind": "bench_load", "model": DIR, "dtype": ..., "device": ..., "repeats": 2}
      from_pretrained(dtype=..., device_map=device) `repeats` times; seconds of each (the last one has a warm
      page cache).

Everything runs in fp32 on the CPU (the bench kinds: the dtype and device asked). Only the fixture-style input names are used: input_ids, attention_mask,
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


def _device_of(task):
    return torch.device(task.get("device") or "cpu")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss():
    """Peak RSS in bytes: VmHWM (this process image's own; ru_maxrss, the fallback, survives execve on Linux)."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory(device):
    """Current and peak memory in bytes: CUDA allocator statistics, or (CPU) the peak RSS so far for both."""
    if device.type == "cuda":
        return {"allocated": torch.cuda.memory_allocated(device), "peak": torch.cuda.max_memory_allocated(device)}
    rss = _peak_rss()
    return {"allocated": rss, "peak": rss}


def _dtype_of(task):
    return torch.bfloat16 if task["dtype"] == "bf16" else torch.float32


def _to(batch, device):
    return {name: tensor.to(device) for name, tensor in batch.items()}


def _decay_groups(model, weight_decay):
    """The Trainer's grouping (get_decay_parameter_names): no decay on biases and norm weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "norm" in name.rsplit(".", 2)[-2].lower() else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def bench_train(task):
    """bench/gpu.mjs's training step: gradient accumulation over the given micro-batches, one optimizer step."""
    import time

    device = _device_of(task)
    torch.manual_seed(0)
    model = load_model(task["model"], _dtype_of(task)).to(device)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith("model.visual."))
    if task.get("lora"):
        from peft import LoraConfig, get_peft_model

        lora = task["lora"]
        model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                 target_modules=lora["targets"], bias="none"))
    if task.get("checkpointing", True):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(_decay_groups(model, 0.01), lr=task.get("learningRate", 1e-5), betas=(0.9, 0.999), eps=1e-8)
    config = model.config
    batches = [_to(read_batch(path, config), device) for path in task["batches"]]
    accumulation = len(batches)

    losses = []

    def step():
        total = 0.0
        for batch in batches:
            loss = model(**batch, use_cache=False).loss / accumulation
            loss.backward()
            total = total + loss.detach()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        losses.append(total)

    with torch.no_grad():  # a tiny text-only forward (the answer's end) pages in the weights, as the pigg side does
        first = batches[0]
        model(input_ids=first["input_ids"][:1, -8:], attention_mask=first["attention_mask"][:1, -8:], use_cache=False)
    _sync(device)
    baseline = _memory(device)["allocated"]
    for _ in range(int(task.get("warmup", 1))):
        step()
    times = []
    for _ in range(int(task["steps"])):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"kind": "bench", "times": times, "median": sorted(times)[len(times) // 2], "baselineBytes": baseline,
            "peakBytes": _memory(device)["peak"], "trainable": sum(p.numel() for p in parameters),
            "losses": [float(loss) for loss in losses],
            "attention": getattr(config, "_attn_implementation", None)}


@torch.no_grad()
def bench_generate(task):
    import time

    device = _device_of(task)
    model = load_model(task["model"], _dtype_of(task)).to(device).eval()
    config = model.config
    prompts = {name: _to(read_batch(path, config, with_labels=False), device) for name, path in task["prompts"].items()}
    new_tokens = int(task.get("maxNewTokens", 20))

    def generate(inputs, count):
        out = model.generate(**inputs, do_sample=False, max_new_tokens=count, min_new_tokens=count)
        _sync(device)
        generated = out.shape[1] - inputs["input_ids"].shape[1]
        if generated != count:
            raise RuntimeError(f"generate made {generated} new tokens, not {count}")

    def timed(inputs, count):
        for _ in range(int(task.get("warmup", 1))):
            generate(inputs, count)
        times = []
        for _ in range(int(task.get("runs", 5))):
            start = time.perf_counter()
            generate(inputs, count)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    result = {"kind": "bench_generate", "attention": getattr(config, "_attn_implementation", None)}
    if "click" in prompts:
        result["click"] = timed(prompts["click"], new_tokens)
        result["prefill"] = timed(prompts["click"], 1)
    if "eval" in prompts:
        result["eval"] = timed(prompts["eval"], new_tokens)
    result["peakBytes"] = _memory(device)["peak"]
    return result


def bench_load(task):
    import gc
    import time

    device = _device_of(task)
    times = []
    for _ in range(int(task.get("repeats", 2))):
        start = time.perf_counter()
        try:
            model = Qwen3VLForConditionalGeneration.from_pretrained(task["model"], dtype=_dtype_of(task), device_map=str(device))
        except TypeError:  # transformers releases before the dtype argument
            model = Qwen3VLForConditionalGeneration.from_pretrained(task["model"], torch_dtype=_dtype_of(task), device_map=str(device))
        _sync(device)
        times.append(time.perf_counter() - start)
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"kind": "bench_load", "times": times}


def bench(task):
    """Times training steps (forward, backward, clip_grad_norm_, torch AdamW) like bench/train-step.mjs does."""
    if "batches" in task:
        return bench_train(task)
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
            kinds = {"train": train, "logits": logits, "bench": bench, "bench_generate": bench_generate, "bench_load": bench_load}
            results.append(kinds[task["kind"]](task))
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:
        versions["peft"] = None
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
