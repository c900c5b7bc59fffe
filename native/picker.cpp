#include "picker.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "error.h"

namespace pigg {

TokenPicker::TokenPicker(const std::vector<SamplingOptions>& rows, int64_t batch, int64_t vocab, at::Device device,
                         const at::Tensor& promptIds, const at::Tensor& promptMask)
    : batch_(batch), device_(device) {
  if (rows.empty()) return;
  if (static_cast<int64_t>(rows.size()) != batch) {
    throw Error("sampling has " + std::to_string(rows.size()) + " entries for a batch of " + std::to_string(batch) + " rows");
  }
  std::vector<uint8_t> sample;
  std::vector<float> temperature, penalty, dropMass;
  std::vector<int64_t> topK;
  for (const SamplingOptions& row : rows) {
    if (!(row.temperature >= 0) || !(row.topP > 0 && row.topP <= 1) || row.topK < 0 || !(row.repetitionPenalty > 0)) {
      throw Error("sampling options out of range: temperature >= 0, top_p in (0, 1], top_k >= 0 and repetition_penalty > 0");
    }
    sample.push_back(row.temperature > 0);
    sample_ = sample_ || row.temperature > 0;
    penalize_ = penalize_ || row.repetitionPenalty != 1.0;
    temperature.push_back(row.temperature > 0 ? static_cast<float>(row.temperature) : 1.0f);
    penalty.push_back(static_cast<float>(row.repetitionPenalty));
    dropMass.push_back(static_cast<float>(1.0 - row.topP));
    // A greedy row's top-k only bounds the candidates sampled() sorts: 1, so it does not widen them.
    topK.push_back(row.temperature > 0 ? (row.topK > 0 ? std::min(row.topK, vocab) : vocab) : 1);
    streams_.emplace_back(row.seed);
  }
  const auto floats = at::TensorOptions().dtype(at::kFloat);
  sampleRow_ = at::tensor(sample, at::kByte).to(at::kBool).to(device);
  temperature_ = at::tensor(temperature, floats).view({batch, 1}).to(device);
  penalty_ = at::tensor(penalty, floats).view({batch, 1}).to(device);
  dropMass_ = at::tensor(dropMass, floats).view({batch, 1}).to(device);
  topK_ = at::tensor(topK, at::kLong).view({batch, 1}).to(device);
  maxTopK_ = *std::max_element(topK.begin(), topK.end());
  if (penalize_) {
    // transformers penalizes every token of input_ids: the prompt (its padding aside) and what was generated.
    seen_ = at::zeros({batch, vocab}, at::TensorOptions().dtype(at::kBool).device(device));
    if (promptIds.defined()) {
      // Left padding: a row's last prompt token is real, and stands in for its padded slots.
      const at::Tensor valid = promptMask.defined() ? promptMask.to(at::kBool) : at::ones_like(promptIds, at::kBool);
      seen_.scatter_(1, at::where(valid, promptIds, promptIds.narrow(1, promptIds.size(1) - 1, 1)).to(device), true);
    }
  }
}

at::Tensor TokenPicker::penalized(const at::Tensor& logits) const {
  // RepetitionPenaltyLogitsProcessor: a seen token's logit is divided by the penalty when positive, multiplied when negative.
  return at::where(seen_, at::where(logits < 0, logits * penalty_, logits / penalty_), logits);
}

at::Tensor TokenPicker::sampled(const at::Tensor& logits) {
  const float inf = std::numeric_limits<float>::infinity();
  // Temperature, then top-k and top-p over the tokens sorted by logit, as the warpers filter them. When every
  // sampled row has a top-k, only the largest k are sorted (a 150k-token sort per step costs more than a tiny
  // model's decode step), unless a tie with some row's k-th logit reaches past them.
  // A positive temperature keeps the order, so the candidates are found on the logits and only they are scaled.
  at::Tensor sorted, order;
  if (maxTopK_ < logits.size(1)) {
    std::tie(sorted, order) = logits.topk(maxTopK_);
    const at::Tensor kth = sorted.gather(1, topK_ - 1);
    // (-inf ties do not count: such tokens, masked by a grammar, are never drawn.)
    const at::Tensor tiesBeyond = ((logits >= kth).sum(-1, /*keepdim=*/true) > maxTopK_) & kth.isfinite();
    if (tiesBeyond.any().item<bool>()) std::tie(sorted, order) = logits.sort(-1, /*descending=*/true);
  } else {
    std::tie(sorted, order) = logits.sort(-1, /*descending=*/true);
  }
  sorted = sorted / temperature_;
  const at::Tensor kth = sorted.gather(1, topK_ - 1);
  at::Tensor kept = sorted.masked_fill(sorted < kth, -inf);  // TopK keeps every token tied with the k-th
  // TopP sorts ascending and drops the tokens whose cumulative probability stays <= 1 - top_p (never the last).
  const at::Tensor ascendingMass = kept.softmax(-1).flip(-1).cumsum(-1).flip(-1);
  at::Tensor drop = ascendingMass <= dropMass_;
  drop.select(1, 0).fill_(false);
  kept = kept.masked_fill(drop, -inf);
  // A draw from the filtered softmax: the first sorted token whose cumulative probability passes u * total.
  std::vector<double> uniform(batch_);
  for (int64_t r = 0; r < batch_; ++r) uniform[r] = static_cast<double>(streams_[r]() >> 11) * 0x1.0p-53;
  const at::Tensor cdf = kept.softmax(-1).to(at::kDouble).cumsum(-1);
  const at::Tensor target = at::tensor(uniform, at::kDouble).view({batch_, 1}).to(device_) * cdf.select(1, -1).unsqueeze(1);
  const at::Tensor index = (cdf <= target).sum(-1, /*keepdim=*/true).clamp_max(cdf.size(1) - 1);
  return order.gather(1, index).squeeze(1);
}

at::Tensor TokenPicker::pick(const at::Tensor& logits) {
  const at::Tensor scores = penalize_ ? penalized(logits) : logits;
  const at::Tensor greedy = scores.argmax(-1);  // ties go to the lowest index
  if (!sample_) return greedy;
  return at::where(sampleRow_, sampled(scores), greedy);
}

void TokenPicker::append(const at::Tensor& tokens) {
  if (penalize_) seen_.scatter_(1, tokens.view({batch_, 1}).to(device_), true);
}

}  // namespace pigg
