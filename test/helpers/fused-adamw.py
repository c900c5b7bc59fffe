"""Reference for test/trainer.test.ts: torch.optim.AdamW(fused=True), transformers' default optimizer since
torch 2.8, fed the gradients pigg's trainer computed, from the weights it started with. Needs only torch.

    python fused-adamw.py job.json

job: {initial, grads: [paths], out, names, no_decay, mode: fp32|pure|master, lr, weight_decay}.
fp32 and pure update the weights in their own dtype; master updates an fp32 copy of bf16 weights and writes it
rounded back to bf16, as pigg's master mode stores it.
"""
import ctypes
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16}


def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[start:end]), dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def write(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        blob = ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size())
        dtype = next(key for key, value in DTYPES.items() if value == tensor.dtype)
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def main():
    job = json.load(open(sys.argv[1]))
    initial = read(job["initial"])
    master = job["mode"] == "master"
    params = {name: torch.nn.Parameter(initial[name].to(torch.float32) if master else initial[name].clone()) for name in job["names"]}
    no_decay = set(job["no_decay"])
    groups = [
        {"params": [p for n, p in params.items() if n not in no_decay], "weight_decay": job["weight_decay"]},
        {"params": [p for n, p in params.items() if n in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=job["lr"], betas=(0.9, 0.999), eps=1e-8, fused=True)
    for path in job["grads"]:
        grads = read(path)
        for name, param in params.items():
            param.grad = grads[name].to(param.dtype)
        optimizer.step()
    write(job["out"], {name: p.detach().to(torch.bfloat16) if master else p.detach() for name, p in params.items()})


main()
