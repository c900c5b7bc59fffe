#include "text.h"

#include <cmath>
#include <limits>

#include "rope.h"

namespace pigg {

TextDecoder::TextDecoder(const ModelConfig& config, const Weights& weights) : config_(config.text) {
  const std::string tp = "model.language_model.";
  embedTokens_ = weights[tp + "embed_tokens.weight"];
  auto linear = [&](const std::string& name) {
    auto it = weights.tensors.find(name + ".bias");
    return Linear{weights[name + ".weight"], it == weights.tensors.end() ? at::Tensor() : it->second};
  };
  for (int64_t l = 0; l < config_.layers; ++l) {
    const std::string p = tp + "layers." + std::to_string(l) + ".";
    layers_.push_back(DecoderLayer{weights[p + "input_layernorm.weight"], weights[p + "post_attention_layernorm.weight"],
                                   weights[p + "self_attn.q_norm.weight"], weights[p + "self_attn.k_norm.weight"], linear(p + "self_attn.q_proj"),
                                   linear(p + "self_attn.k_proj"), linear(p + "self_attn.v_proj"), linear(p + "self_attn.o_proj"),
                                   linear(p + "mlp.gate_proj"), linear(p + "mlp.up_proj"), linear(p + "mlp.down_proj")});
  }
  finalNorm_ = weights[tp + "norm.weight"];
  head_ = weights["lm_head.weight"];
}

at::Tensor TextDecoder::embed(const at::Tensor& ids) const { return at::embedding(embedTokens_, ids.to(embedTokens_.device())); }

double maskedScore(at::ScalarType dtype) {
  if (dtype == at::kBFloat16) return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
  if (dtype == at::kHalf) return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
  return static_cast<double>(std::numeric_limits<float>::lowest());
}

KVCache TextDecoder::newCache(int64_t batch, int64_t columns) const {
  // A multiple of 8 columns: CUDA's memory-efficient attention takes a mask whose rows are 8-aligned as it is
  // (it copies any other into a padded one, in every layer of every step).
  const int64_t capacity = (columns + 7) / 8 * 8;
  KVCache cache;
  const auto options = embedTokens_.options().requires_grad(false);
  // Zeros, not empty: a decode step scores the unwritten columns too (then masks them), so they must be finite.
  for (int64_t l = 0; l < config_.layers; ++l) {
    cache.keys.push_back(at::zeros({batch, config_.kvHeads, capacity, config_.headDim}, options));
    cache.values.push_back(at::zeros({batch, config_.kvHeads, capacity, config_.headDim}, options));
  }
  cache.mask = at::full({batch, 1, 1, capacity}, maskedScore(options.dtype().toScalarType()), options);
  return cache;
}

void KVCache::startDecoding(const at::Tensor& promptValid) {
  const int64_t batch = promptValid.size(0), prompt = promptValid.size(1);
  mask.narrow(3, 0, prompt).masked_fill_(promptValid.view({batch, 1, 1, prompt}), 0.0);
  position = at::full({1}, prompt - 1, mask.options().dtype(at::kLong));
}

void KVCache::nextStep() {
  position.add_(1);
  mask.index_fill_(3, position, 0.0);
}

at::Tensor TextDecoder::layer(int64_t index, const at::Tensor& hidden, const AttentionContext& context, KVCache* cache, bool training) const {
  const DecoderLayer& L = layers_[index];
  const int64_t batch = hidden.size(0), seq = hidden.size(1);
  const int64_t heads = config_.heads, kvHeads = config_.kvHeads, headDim = config_.headDim;
  const double eps = config_.rmsNormEps;

  // The per-row adapters of projection p of this layer (q k v o gate up down), if any.
  auto rows = [&](int64_t p) { return context.rowLora ? &(*context.rowLora)[index * 7 + p] : nullptr; };
  const at::Tensor a = rmsNorm(hidden, L.inputNorm, eps);
  // q_norm / k_norm act per head over head_dim, before the rotary.
  at::Tensor q = rmsNorm(L.q(a, training, rows(0)).view({batch, seq, heads, headDim}), L.qNorm, eps).transpose(1, 2);
  at::Tensor k = rmsNorm(L.k(a, training, rows(1)).view({batch, seq, kvHeads, headDim}), L.kNorm, eps).transpose(1, 2);
  at::Tensor v = L.v(a, training, rows(2)).view({batch, seq, kvHeads, headDim}).transpose(1, 2);
  const at::Tensor cos = context.cos.unsqueeze(1), sin = context.sin.unsqueeze(1);
  q = applyRotary(q, cos, sin);
  k = applyRotary(k, cos, sin);
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  at::Tensor attended;
  if (cache && cache->decoding()) {
    cache->keys[index].index_copy_(2, cache->position, k);
    cache->values[index].index_copy_(2, cache->position, v);
    // Query head h reads kv head h / group; with one query per row, the group of heads that share a kv head
    // becomes `group` queries of one head: grouped attention under a mask, without a repeat of the cache, that
    // every fused kernel takes.
    const int64_t group = heads / kvHeads;
    attended = at::scaled_dot_product_attention(q.reshape({batch, kvHeads, group, headDim}), cache->keys[index], cache->values[index], cache->mask, 0.0, false, scale)
                   .reshape({batch, heads, 1, headDim});
  } else {
    if (cache) {
      cache->keys[index].narrow(2, 0, seq).copy_(k);
      cache->values[index].narrow(2, 0, seq).copy_(v);
    }
    if (context.mask.defined()) {
      // Masked attention: expand the kv heads (query head h uses kv head h / group), since not every fused
      // kernel takes grouped heads together with a mask.
      const int64_t group = heads / kvHeads;
      attended = at::scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), context.mask, 0.0, false, scale);
    } else {
      attended = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/seq > 1, scale, /*enable_gqa=*/true);
    }
  }
  at::Tensor x = hidden + L.o(attended.transpose(1, 2).reshape({batch, seq, heads * headDim}), training, rows(3));
  const at::Tensor b = rmsNorm(x, L.postNorm, eps);
  return x + L.down(at::silu(L.gate(b, training, rows(4))) * L.up(b, training, rows(5)), training, rows(6));
}

at::Tensor TextDecoder::norm(const at::Tensor& hidden) const { return rmsNorm(hidden, finalNorm_, config_.rmsNormEps); }

at::Tensor TextDecoder::logits(const at::Tensor& normed) const { return at::linear(normed, head_); }

}  // namespace pigg
