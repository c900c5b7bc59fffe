#include "grammar.h"

#include <algorithm>
#include <string>

#include "error.h"

namespace pigg {

Grammar::Grammar(GrammarTables tables) : tables_(std::move(tables)) {
  const auto& t = tables_;
  if (t.states < 1) throw Error("grammar: it has no states");
  if (t.start < 0 || t.start >= t.states) throw Error("grammar: start state " + std::to_string(t.start) + " is out of range");
  if (t.transitions.size() != static_cast<size_t>(t.states) * 256) throw Error("grammar: transitions must hold states x 256 entries");
  if (t.accepting.size() != static_cast<size_t>(t.states)) throw Error("grammar: accepting must hold one entry per state");
  for (int32_t next : t.transitions) {
    if (next < -1 || next >= t.states) throw Error("grammar: a transition leads to state " + std::to_string(next) + ", out of range");
  }
  if (t.vocabSize < 1 || t.tokenOffsets.size() != static_cast<size_t>(t.vocabSize) + 1) throw Error("grammar: token offsets must hold vocabSize + 1 entries");
  if (t.special.size() != static_cast<size_t>(t.vocabSize)) throw Error("grammar: special must hold one entry per token");
  if (t.tokenOffsets.front() != 0 || t.tokenOffsets.back() != static_cast<int32_t>(t.tokenBytes.size()) ||
      !std::is_sorted(t.tokenOffsets.begin(), t.tokenOffsets.end())) {
    throw Error("grammar: token offsets must rise from 0 to the number of token bytes");
  }
  if (t.eosIds.empty()) throw Error("grammar: constrained decoding needs at least one EOS id");
  for (int64_t id : t.eosIds) {
    if (id < 0 || id >= t.vocabSize) throw Error("grammar: EOS id " + std::to_string(id) + " is outside the vocabulary");
  }
}

bool Grammar::isEos(int64_t token) const { return std::find(tables_.eosIds.begin(), tables_.eosIds.end(), token) != tables_.eosIds.end(); }

int32_t Grammar::walk(int32_t state, int64_t token) const {
  const int32_t begin = tables_.tokenOffsets[token], end = tables_.tokenOffsets[token + 1];
  if (tables_.special[token] || begin == end) return -1;
  for (int32_t i = begin; i < end && state >= 0; ++i) state = tables_.transitions[static_cast<size_t>(state) * 256 + tables_.tokenBytes[i]];
  return state;
}

int32_t Grammar::advance(int32_t state, int64_t token) const {
  if (token < 0 || token >= tables_.vocabSize) return -1;
  if (isEos(token)) return tables_.accepting[state] ? state : -1;
  return walk(state, token);
}

at::Tensor Grammar::mask(int32_t state, at::Device device) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto key = std::make_pair(state, device.str());
  auto it = masks_.find(key);
  if (it != masks_.end()) {
    it->second.lastUse = ++uses_;
    return it->second.mask;
  }
  at::Tensor allowed = at::zeros({tables_.vocabSize}, at::kBool);
  bool* data = allowed.data_ptr<bool>();
  bool any = false;
  for (int64_t token = 0; token < tables_.vocabSize; ++token) {
    data[token] = walk(state, token) >= 0;
    any = any || data[token];
  }
  for (int64_t id : tables_.eosIds) data[id] = tables_.accepting[state] || !any;
  const size_t capacity = static_cast<size_t>(std::max<int64_t>(1, kMaskCacheBytes / tables_.vocabSize));
  if (masks_.size() >= capacity) {
    masks_.erase(std::min_element(masks_.begin(), masks_.end(), [](const auto& a, const auto& b) { return a.second.lastUse < b.second.lastUse; }));
  }
  const at::Tensor onDevice = allowed.to(device);
  masks_[key] = CachedMask{onDevice, ++uses_};
  return onDevice;
}

}  // namespace pigg
