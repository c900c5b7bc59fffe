// The tables of a constrained-decoding grammar as they cross from JS (torch-free, so api.h can carry them):
// a DFA over bytes and the bytes of every token of the vocabulary.
#pragma once
#include <cstdint>
#include <vector>

namespace pigg {

struct GrammarTables {
  int32_t states = 0;
  int32_t start = 0;
  std::vector<int32_t> transitions;  // [states * 256], -1 = byte not allowed
  std::vector<uint8_t> accepting;    // [states]
  int64_t vocabSize = 0;
  std::vector<int32_t> tokenOffsets; // [vocabSize + 1]
  std::vector<uint8_t> tokenBytes;
  std::vector<uint8_t> special;      // [vocabSize]: never allowed (unless an EOS id)
  std::vector<int64_t> eosIds;
};

}  // namespace pigg
