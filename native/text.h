// The Qwen3 text decoder of Qwen3-VL: token embedding, pre-norm layers (GQA attention with per-head q/k RMSNorm
// and interleaved M-RoPE, SwiGLU MLP), final RMSNorm and the output projection. A layer is a pure function of
// its inputs, so training can recompute it (gradient checkpointing).
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "checkpoint.h"
#include "config.h"
#include "layers.h"

namespace pigg {

// What every layer of one forward shares.
struct AttentionContext {
  at::Tensor cos, sin;   // [B, L, head_dim] in the compute dtype
  at::Tensor mask;       // additive [B, 1, L, Lk]; undefined for a plain causal forward without padding
  // Per-row adapters of every decoder linear (layer * 7 + projection, q k v o gate up down); null for none.
  const std::vector<RowLora>* rowLora = nullptr;
};

// Preallocated keys/values per layer, [B, kv_heads, capacity, head_dim]; keys are stored after norm and rotary.
struct KVCache {
  std::vector<at::Tensor> keys, values;
  int64_t length = 0;
};

struct DecoderLayer {
  at::Tensor inputNorm, postNorm, qNorm, kNorm;
  Linear q, k, v, o, gate, up, down;
};

class TextDecoder {
 public:
  TextDecoder(const ModelConfig& config, const Weights& weights);

  at::Tensor embed(const at::Tensor& ids) const;
  // One decoder layer. With a cache, the new keys/values are written at cache->length (the caller advances it).
  at::Tensor layer(int64_t index, const at::Tensor& hidden, const AttentionContext& context, KVCache* cache = nullptr, bool training = false) const;
  at::Tensor norm(const at::Tensor& hidden) const;
  at::Tensor logits(const at::Tensor& normed) const;
  const at::Tensor& headWeight() const { return head_; }

  KVCache newCache(int64_t batch, int64_t capacity) const;
  int64_t layers() const { return static_cast<int64_t>(layers_.size()); }
  std::vector<DecoderLayer>& mutableLayers() { return layers_; }
  const TextConfig& config() const { return config_; }

 private:
  TextConfig config_;
  at::Tensor embedTokens_;
  std::vector<DecoderLayer> layers_;
  at::Tensor finalNorm_;
  at::Tensor head_;
};

}  // namespace pigg
