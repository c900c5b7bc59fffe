// The decode loop's choice of the next token per row: greedy (argmax) or sampled as transformers' generate()
// samples (RepetitionPenalty, then Temperature, TopK and TopP warpers, then a draw from the softmax). Each row has
// its own seeded random stream, so a row's tokens do not depend on the other rows of its batch.
#pragma once
#include <ATen/ATen.h>

#include <random>
#include <vector>

#include "sampling_options.h"

namespace pigg {

class TokenPicker {
 public:
  // rows: empty (every row greedy) or one entry per row. promptIds/promptMask [batch, length] (CPU) seed the
  // repetition penalty's set of seen tokens; they may be undefined when no row has a penalty.
  TokenPicker(const std::vector<SamplingOptions>& rows, int64_t batch, int64_t vocab, at::Device device,
              const at::Tensor& promptIds = at::Tensor(), const at::Tensor& promptMask = at::Tensor());

  // logits [batch, vocab] (float; disallowed tokens already -inf) -> next token per row [batch] (long, on device).
  at::Tensor pick(const at::Tensor& logits);
  // The tokens appended to every row (for the repetition penalty).
  void append(const at::Tensor& tokens);

 private:
  at::Tensor penalized(const at::Tensor& logits) const;
  at::Tensor sampled(const at::Tensor& logits);

  int64_t batch_;
  at::Device device_;
  bool sample_ = false, penalize_ = false;
  at::Tensor sampleRow_;              // [batch] bool
  at::Tensor temperature_, penalty_;  // [batch, 1] float
  at::Tensor topK_;                   // [batch, 1] long, vocab for "all"
  int64_t maxTopK_ = 0;
  at::Tensor dropMass_;               // [batch, 1] float: 1 - top_p, as transformers compares
  at::Tensor seen_;                   // [batch, vocab] bool
  std::vector<std::mt19937_64> streams_;
};

}  // namespace pigg
