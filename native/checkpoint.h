// A Qwen3-VL checkpoint's weights: the tensors the config implies (names and shapes), loading them from a
// folder with every check done before any data moves, and saving a folder transformers can load.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "config.h"

namespace pigg {

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// Every tensor a checkpoint of this config must hold (lm_head.weight only when untied).
std::vector<WeightSpec> expectedWeights(const ModelConfig& config);

struct Weights {
  std::map<std::string, at::Tensor> tensors;  // canonical HF names; "lm_head.weight" always present (tied: the embedding)
  std::vector<std::string> files;
  std::vector<std::string> warnings;
  bool headTied = false;
  const at::Tensor& operator[](const std::string& name) const;
};

struct CheckpointSummary {
  std::vector<std::string> files;
  std::map<std::string, int64_t> dtypeCounts;  // tensors per stored dtype
  int64_t tensorCount = 0;
  std::vector<std::string> warnings;
  bool headTied = false;
};

// Validates names, shapes and dtypes of a checkpoint folder without loading data.
CheckpointSummary validateCheckpoint(const std::string& dir, const ModelConfig& config);

Weights loadWeights(const std::string& dir, const ModelConfig& config, at::Device device, at::ScalarType dtype);

}  // namespace pigg

namespace pigg {

// Writes a folder transformers can load, atomically: config.json (dtype updated), model.safetensors or
// <= maxShardBytes shards with model.safetensors.index.json, and the generation, tokenizer and processor files
// copied from sourceDir (if given). A tied head is not written (transformers drops tied duplicates).
void saveCheckpoint(const std::string& dir, const ModelConfig& config, const std::map<std::string, at::Tensor>& tensors, bool headTied,
                    const std::string& sourceDir, at::ScalarType dtype, int64_t maxShardBytes = 5'000'000'000);

// Random weights in transformers' initialisation style (normal(0, std) for linear and embedding weights, ones for
// norm weights, zeros for biases), generated on `device` from `seed`.
std::map<std::string, at::Tensor> randomWeights(const ModelConfig& config, at::ScalarType dtype, at::Device device, uint64_t seed, double std = 0.02);

}  // namespace pigg
