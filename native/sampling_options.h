// One generate row's sampling settings as they cross from JS (torch-free, so api.h can carry them).
#pragma once
#include <cstdint>

namespace pigg {

struct SamplingOptions {
  double temperature = 0.0;        // 0: greedy (the most likely token)
  double topP = 1.0;               // nucleus mass kept (1: all)
  int64_t topK = 0;                // most likely tokens kept (0: all)
  double repetitionPenalty = 1.0;  // transformers' RepetitionPenalty over the prompt and the answer so far
  uint64_t seed = 0;               // the row's own random stream
};

}  // namespace pigg
