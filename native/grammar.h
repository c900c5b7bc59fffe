// Constrained greedy decoding: a byte-level DFA (compiled in TypeScript from the answer's grammar) and the
// tokenizer's token bytes give, for each DFA state, the set of tokens whose bytes the DFA accepts from there.
// Those masks are built on first use of a state and cached on the device; EOS ids are allowed exactly in
// accepting states, so a constrained answer always completes and always parses.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "grammar_tables.h"

namespace pigg {

class Grammar {
 public:
  explicit Grammar(GrammarTables tables);  // validates the tables (one precise Error)

  int32_t start() const { return tables_.start; }
  int64_t vocabSize() const { return tables_.vocabSize; }
  // The DFA state after `token` from `state`; -1 when the token is not allowed there. An EOS id keeps the state.
  int32_t advance(int32_t state, int64_t token) const;
  bool isEos(int64_t token) const;
  // bool [vocab] on `device`: the tokens allowed in `state` (never empty: a dead state allows EOS).
  at::Tensor mask(int32_t state, at::Device device) const;
  int32_t states() const { return tables_.states; }

  // Device bytes of cached masks at most (a long free-text grammar has thousands of states); the least recently
  // used mask goes first, and is rebuilt (milliseconds) when its state comes back.
  static constexpr int64_t kMaskCacheBytes = int64_t{96} << 20;

 private:
  struct CachedMask {
    at::Tensor mask;
    uint64_t lastUse = 0;
  };
  int32_t walk(int32_t state, int64_t token) const;
  GrammarTables tables_;
  mutable std::mutex mutex_;
  mutable std::map<std::pair<int32_t, std::string>, CachedMask> masks_;  // (state, device) -> mask
  mutable uint64_t uses_ = 0;
};

}  // namespace pigg
