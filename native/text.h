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

// The KV cache of one generate call, static: per layer, keys (after norm and rotary) and values
// [B, kv_heads, capacity, head_dim] allocated once. The prefill writes columns [0, prompt); from startDecoding on,
// each decode step writes column `position` and attends over all `capacity` columns under `mask`. So every decode
// step runs the same kernels on tensors of the same shapes and addresses, its varying inputs (the write column,
// the mask) being device buffers updated in place: what a CUDA graph of the step needs, and one index_fill_ per
// step instead of a new mask and a longer key window. Attending over the unwritten tail costs capacity - filled
// masked columns (at most maxNewTokens), little beside a decode step's weight reads.
struct KVCache {
  std::vector<at::Tensor> keys, values;
  at::Tensor position;  // int64 [1] on the device: the column the current decode step writes; undefined in the prefill
  at::Tensor mask;      // additive [B, 1, 1, capacity] in the compute dtype: 0 for the columns a decode step sees

  bool decoding() const { return position.defined(); }
  // After the prefill of prompts whose valid (not padding) columns are promptValid (bool [B, prompt]).
  void startDecoding(const at::Tensor& promptValid);
  // Before each decode step: the next column, seen by every row from this step on.
  void nextStep();
};

// The additive mask value of a masked score: the dtype's lowest finite value (not -inf), as transformers uses,
// keeps fully masked query rows finite.
double maskedScore(at::ScalarType dtype);

struct DecoderLayer {
  at::Tensor inputNorm, postNorm, qNorm, kNorm;
  Linear q, k, v, o, gate, up, down;
};

class TextDecoder {
 public:
  TextDecoder(const ModelConfig& config, const Weights& weights);

  at::Tensor embed(const at::Tensor& ids) const;
  // One decoder layer. With a cache, the prefill (before startDecoding) writes its keys/values at columns [0, L);
  // a decode step (L = 1) writes its column and attends over the whole cache.
  at::Tensor layer(int64_t index, const at::Tensor& hidden, const AttentionContext& context, KVCache* cache = nullptr, bool training = false) const;
  at::Tensor norm(const at::Tensor& hidden) const;
  at::Tensor logits(const at::Tensor& normed) const;
  const at::Tensor& headWeight() const { return head_; }

  // A cache for prompts and new keys of `columns` in all (its capacity rounded up, see text.cpp).
  KVCache newCache(int64_t batch, int64_t columns) const;
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
