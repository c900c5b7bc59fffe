#include "config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "error.h"
#include "storage.h"

namespace pigg {
namespace {

using json = nlohmann::json;

class Reader {
 public:
  Reader(const json& object, std::string path, std::string prefix) : object_(object), path_(std::move(path)), prefix_(std::move(prefix)) {}

  int64_t integer(const char* key) const {
    const json& value = require(key);
    if (!value.is_number_integer()) fail(key, "must be an integer");
    return value.get<int64_t>();
  }
  int64_t integer(const char* key, int64_t fallback) const { return object_.contains(key) && !object_[key].is_null() ? integer(key) : fallback; }
  double number(const char* key, double fallback) const {
    if (!object_.contains(key) || object_[key].is_null()) return fallback;
    if (!object_[key].is_number()) fail(key, "must be a number");
    return object_[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!object_.contains(key) || object_[key].is_null()) return fallback;
    if (!object_[key].is_boolean()) fail(key, "must be true or false");
    return object_[key].get<bool>();
  }
  std::vector<int64_t> integers(const char* key) const {
    const json& value = require(key);
    if (!value.is_array()) fail(key, "must be an array of integers");
    std::vector<int64_t> out;
    for (const auto& item : value) {
      if (!item.is_number_integer()) fail(key, "must be an array of integers");
      out.push_back(item.get<int64_t>());
    }
    return out;
  }
  const json& require(const char* key) const {
    if (!object_.contains(key)) fail(key, "is missing");
    return object_[key];
  }
  [[noreturn]] void fail(const char* key, const std::string& why) const { throw Error(path_ + ": " + prefix_ + key + " " + why); }

 private:
  const json& object_;
  std::string path_;
  std::string prefix_;
};

std::vector<int64_t> tokenIds(const json& value) {
  std::vector<int64_t> out;
  if (value.is_number_integer()) out.push_back(value.get<int64_t>());
  if (value.is_array()) {
    for (const auto& item : value) {
      if (item.is_number_integer()) out.push_back(item.get<int64_t>());
    }
  }
  return out;
}

}  // namespace

int64_t VisionConfig::positionSide() const { return static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(numPositionEmbeddings)))); }

ModelConfig ModelConfig::fromJson(const json& root, const std::string& path) {
  if (!root.is_object()) throw Error(path + ": not a JSON object");
  ModelConfig config;
  config.path = path;
  config.raw = root;
  const std::string modelType = root.value("model_type", "");
  if (modelType != "qwen3_vl") {
    throw Error(path + ": model_type is '" + modelType + "', pigg runs Qwen3-VL (model_type 'qwen3_vl')");
  }
  if (!root.contains("text_config") || !root["text_config"].is_object()) throw Error(path + ": text_config is missing");
  if (!root.contains("vision_config") || !root["vision_config"].is_object()) throw Error(path + ": vision_config is missing");
  const Reader top(root, path, "");
  const Reader text(root["text_config"], path, "text_config.");
  const Reader vision(root["vision_config"], path, "vision_config.");

  TextConfig& t = config.text;
  t.vocabSize = text.integer("vocab_size");
  t.hidden = text.integer("hidden_size");
  t.intermediate = text.integer("intermediate_size");
  t.layers = text.integer("num_hidden_layers");
  t.heads = text.integer("num_attention_heads");
  t.kvHeads = text.integer("num_key_value_heads", t.heads);
  t.headDim = text.integer("head_dim", t.heads > 0 ? t.hidden / t.heads : 0);
  t.rmsNormEps = text.number("rms_norm_eps", 1e-6);
  t.attentionBias = text.boolean("attention_bias", false);
  // The rope block lives under rope_parameters (transformers 5) or rope_scaling + rope_theta (checkpoints on disk).
  const json& textJson = root["text_config"];
  const char* ropeKey = textJson.contains("rope_parameters") && textJson["rope_parameters"].is_object() ? "rope_parameters" : "rope_scaling";
  if (!textJson.contains(ropeKey) || !textJson[ropeKey].is_object()) throw Error(path + ": text_config.rope_scaling (or rope_parameters) is missing");
  const Reader rope(textJson[ropeKey], path, std::string("text_config.") + ropeKey + ".");
  t.mropeSection = rope.integers("mrope_section");
  t.ropeTheta = rope.number("rope_theta", text.number("rope_theta", 5000000.0));
  const std::string ropeType = textJson[ropeKey].value("rope_type", textJson[ropeKey].value("type", "default"));
  if (ropeType != "default") throw Error(path + ": text_config." + ropeKey + ".rope_type '" + ropeType + "' is not supported (only 'default')");

  VisionConfig& v = config.vision;
  v.depth = vision.integer("depth");
  v.hidden = vision.integer("hidden_size");
  v.intermediate = vision.integer("intermediate_size");
  v.heads = vision.integer("num_heads");
  v.inChannels = vision.integer("in_channels", 3);
  v.patchSize = vision.integer("patch_size", 16);
  v.temporalPatchSize = vision.integer("temporal_patch_size", 2);
  v.spatialMergeSize = vision.integer("spatial_merge_size", 2);
  v.outHidden = vision.integer("out_hidden_size");
  v.numPositionEmbeddings = vision.integer("num_position_embeddings");
  v.deepstackIndexes = vision.integers("deepstack_visual_indexes");
  const std::string visionAct = root["vision_config"].value("hidden_act", "gelu_pytorch_tanh");
  if (visionAct != "gelu_pytorch_tanh") throw Error(path + ": vision_config.hidden_act '" + visionAct + "' is not supported (gelu_pytorch_tanh)");
  const std::string textAct = textJson.value("hidden_act", "silu");
  if (textAct != "silu") throw Error(path + ": text_config.hidden_act '" + textAct + "' is not supported (silu)");

  config.imageTokenId = top.integer("image_token_id");
  config.videoTokenId = top.integer("video_token_id", -1);
  config.visionStartTokenId = top.integer("vision_start_token_id", -1);
  config.visionEndTokenId = top.integer("vision_end_token_id", -1);
  config.tieWordEmbeddings = top.boolean("tie_word_embeddings", text.boolean("tie_word_embeddings", false));
  config.eosTokenIds = tokenIds(textJson.value("eos_token_id", json()));
  config.padTokenId = text.integer("bos_token_id", -1);

  // Sizes must be positive: zero or negative values would give empty weights, or divide by zero in the grid math.
  auto positive = [&](const std::string& key, int64_t value) {
    if (value <= 0) throw Error(path + ": " + key + " must be positive, got " + std::to_string(value));
  };
  positive("text_config.vocab_size", t.vocabSize);
  positive("text_config.hidden_size", t.hidden);
  positive("text_config.intermediate_size", t.intermediate);
  positive("text_config.num_hidden_layers", t.layers);
  positive("text_config.num_attention_heads", t.heads);
  positive("text_config.num_key_value_heads", t.kvHeads);
  positive("text_config.head_dim", t.headDim);
  positive("vision_config.depth", v.depth);
  positive("vision_config.hidden_size", v.hidden);
  positive("vision_config.intermediate_size", v.intermediate);
  positive("vision_config.num_heads", v.heads);
  positive("vision_config.in_channels", v.inChannels);
  positive("vision_config.patch_size", v.patchSize);
  positive("vision_config.temporal_patch_size", v.temporalPatchSize);
  positive("vision_config.spatial_merge_size", v.spatialMergeSize);
  positive("vision_config.out_hidden_size", v.outHidden);
  positive("vision_config.num_position_embeddings", v.numPositionEmbeddings);
  if (!(t.rmsNormEps > 0)) throw Error(path + ": text_config.rms_norm_eps must be positive");
  if (!(t.ropeTheta > 0)) throw Error(path + ": rope_theta must be positive");

  // Consistency checks that would otherwise surface as shape errors deep inside a forward.
  int64_t sectionSum = 0;
  for (int64_t s : t.mropeSection) sectionSum += s;
  if (t.mropeSection.size() != 3 || sectionSum * 2 != t.headDim) {
    throw Error(path + ": text_config mrope_section must have 3 entries summing to head_dim/2 (" + std::to_string(t.headDim / 2) + "), got sum " +
                std::to_string(sectionSum));
  }
  if (t.heads <= 0 || t.kvHeads <= 0 || t.heads % t.kvHeads != 0) throw Error(path + ": text_config num_attention_heads must be a multiple of num_key_value_heads");
  if (v.outHidden != t.hidden) {
    throw Error(path + ": vision_config.out_hidden_size " + std::to_string(v.outHidden) + " differs from text_config.hidden_size " + std::to_string(t.hidden));
  }
  if (v.heads <= 0 || v.hidden % v.heads != 0) throw Error(path + ": vision_config.hidden_size must be a multiple of num_heads");
  if (v.headDim() % 4 != 0) throw Error(path + ": vision head dim " + std::to_string(v.headDim()) + " must be a multiple of 4 (2D rotary)");
  if (v.positionSide() * v.positionSide() != v.numPositionEmbeddings) {
    throw Error(path + ": vision_config.num_position_embeddings " + std::to_string(v.numPositionEmbeddings) + " is not a perfect square");
  }
  for (int64_t index : v.deepstackIndexes) {
    if (index < 0 || index >= v.depth) throw Error(path + ": vision_config.deepstack_visual_indexes entry " + std::to_string(index) + " is outside 0.." + std::to_string(v.depth - 1));
  }
  if (static_cast<int64_t>(v.deepstackIndexes.size()) > t.layers) throw Error(path + ": more deepstack features than text layers");
  if (config.imageTokenId < 0 || config.imageTokenId >= t.vocabSize) throw Error(path + ": image_token_id " + std::to_string(config.imageTokenId) + " is outside the vocabulary");
  return config;
}

ModelConfig ModelConfig::fromDir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path file = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir)) throw Error(dir + ": not a directory");
  ModelConfig config = fromJson(readJsonFile(file.string(), "is this a Hugging Face model folder?"), file.string());
  std::string padSource = file.string(), padField = "text_config.bos_token_id";  // where padTokenId came from
  // generation_config.json carries the complete eos list ([<|im_end|>, <|endoftext|>]) and the pad id.
  const fs::path generation = fs::path(dir) / "generation_config.json";
  if (fs::exists(generation)) {
    const json gen = readJsonFile(generation.string());
    if (gen.contains("eos_token_id")) {
      for (int64_t id : tokenIds(gen["eos_token_id"])) {
        if (std::find(config.eosTokenIds.begin(), config.eosTokenIds.end(), id) == config.eosTokenIds.end()) config.eosTokenIds.push_back(id);
      }
    }
    if (gen.contains("pad_token_id") && gen["pad_token_id"].is_number_integer()) {
      config.padTokenId = gen["pad_token_id"].get<int64_t>();
      padSource = generation.string();
      padField = "pad_token_id";
    }
  }
  // No pad id anywhere: pad finished rows with the first EOS id, as transformers' generate does.
  if (config.padTokenId < 0 && !config.eosTokenIds.empty()) {
    config.padTokenId = config.eosTokenIds.front();
    padField = "eos_token_id";
  }
  if (config.padTokenId >= config.text.vocabSize) {
    throw Error(padSource + ": " + padField + " " + std::to_string(config.padTokenId) + " (the generation pad id) is outside the vocabulary [0, " +
                std::to_string(config.text.vocabSize) + ")");
  }
  return config;
}

}  // namespace pigg
