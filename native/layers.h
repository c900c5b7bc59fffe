// Small building blocks shared by the vision tower and the text decoder, with transformers' numerics:
// norms normalise in fp32 and round before the weight multiply; everything else stays in the compute dtype.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace pigg {

// Per-row LoRA adapters of one linear layer for a batch (the BGMV idea of Punica / S-LoRA): the batch's distinct
// adapters stacked with their ranks zero-padded to the largest, and each row's adapter and scale.
struct RowLora {
  at::Tensor a;      // [adapters, r, in] fp32
  at::Tensor b;      // [adapters, out, r] fp32
  at::Tensor rows;   // int64 [B]: each row's adapter in a / b
  at::Tensor scale;  // fp32 [B, 1, 1]: alpha / r of the row's adapter, 0 for rows without one
  bool defined() const { return a.defined(); }
};

// A Linear layer ([out, in] weight as stored by PyTorch), optionally carrying a LoRA adapter:
// y = x W^T + b + scale * dropout(x) A^T B^T.
struct Linear {
  at::Tensor weight;
  at::Tensor bias;
  at::Tensor loraA;  // [r, in], fp32
  at::Tensor loraB;  // [out, r], fp32
  double loraScale = 0.0;
  double loraDropout = 0.0;
  bool hasLora() const { return loraA.defined(); }
  // `rows` adds per-row adapters to x [B, L, in] (inference), beside any adapter attached to the layer itself.
  at::Tensor operator()(const at::Tensor& x, bool training = false, const RowLora* rows = nullptr) const;
};

// RMSNorm over the last dimension: weight * to_input_dtype(x32 * rsqrt(mean(x32^2) + eps)).
inline at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, true) + eps);
  return weight * normed.to(x.scalar_type());
}

inline at::Tensor layerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps = 1e-6) {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

}  // namespace pigg
