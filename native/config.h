// config.json of a Qwen3-VL checkpoint as typed structs (both the legacy rope_theta + rope_scaling form and
// the newer rope_parameters form), with the consistency checks the spec asks for.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pigg {

struct VisionConfig {
  int64_t depth = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t heads = 0;
  int64_t inChannels = 3;
  int64_t patchSize = 16;
  int64_t temporalPatchSize = 2;
  int64_t spatialMergeSize = 2;
  int64_t outHidden = 0;
  int64_t numPositionEmbeddings = 0;
  std::vector<int64_t> deepstackIndexes;
  double ropeTheta = 10000.0;
  int64_t headDim() const { return hidden / heads; }
  int64_t patchInputSize() const { return inChannels * temporalPatchSize * patchSize * patchSize; }
  int64_t positionSide() const;  // sqrt(numPositionEmbeddings)
};

struct TextConfig {
  int64_t vocabSize = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kvHeads = 0;
  int64_t headDim = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 5000000.0;
  std::vector<int64_t> mropeSection;
  bool attentionBias = false;
};

struct ModelConfig {
  std::string path;
  TextConfig text;
  VisionConfig vision;
  int64_t imageTokenId = -1;
  int64_t videoTokenId = -1;
  int64_t visionStartTokenId = -1;
  int64_t visionEndTokenId = -1;
  bool tieWordEmbeddings = false;
  std::vector<int64_t> eosTokenIds;
  int64_t padTokenId = -1;  // generation padding (generation_config.json pad_token_id, else text bos)
  nlohmann::json raw;

  static ModelConfig fromDir(const std::string& dir);
  static ModelConfig fromJson(const nlohmann::json& json, const std::string& path);
};

}  // namespace pigg
