#include "checkpoint.h"

#include <set>

#include "control.h"
#include "error.h"
#include "safetensors.h"

namespace pigg {
namespace {

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Third-party exports use shorter prefixes; map them onto transformers' module paths.
std::string canonicalName(const std::string& name) {
  auto startsWith = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if (startsWith("model.visual.") || startsWith("model.language_model.") || name == "lm_head.weight") return name;
  if (startsWith("visual.")) return "model." + name;
  if (startsWith("language_model.model.")) return "model.language_model." + name.substr(21);
  if (startsWith("language_model.")) return "model." + name;
  if (startsWith("model.")) return "model.language_model." + name.substr(6);
  return name;
}

struct Resolved {
  TensorSource source;
  std::map<std::string, std::string> canonicalToStored;
  CheckpointSummary summary;
};

Resolved resolve(const std::string& dir, const ModelConfig& config) {
  Resolved out{TensorSource::openDir(dir), {}, {}};
  out.summary.files = out.source.files();
  for (const auto& stored : out.source.names()) {
    const std::string canonical = canonicalName(stored);
    if (!out.canonicalToStored.emplace(canonical, stored).second) {
      throw Error(out.source.fileOf(stored) + ": tensors '" + stored + "' and '" + out.canonicalToStored[canonical] + "' map to the same weight '" + canonical + "'");
    }
    out.summary.dtypeCounts[out.source.entry(stored).dtype]++;
    out.summary.tensorCount++;
  }
  std::set<std::string> expectedNames;
  const bool hasHead = out.canonicalToStored.count("lm_head.weight") > 0;
  if (!hasHead && !config.tieWordEmbeddings) {
    throw Error(dir + ": config says tie_word_embeddings is false but the checkpoint has no lm_head.weight");
  }
  out.summary.headTied = !hasHead;
  ModelConfig withHead = config;
  withHead.tieWordEmbeddings = !hasHead;
  for (const auto& spec : expectedWeights(withHead)) {
    expectedNames.insert(spec.name);
    auto it = out.canonicalToStored.find(spec.name);
    if (it == out.canonicalToStored.end()) throw Error(dir + ": weight '" + spec.name + "' is missing (expected shape " + shapeText(spec.shape) + ")");
    const TensorEntry& entry = out.source.entry(it->second);
    if (entry.shape != spec.shape) {
      throw Error(out.source.fileOf(it->second) + ": tensor '" + it->second + "' has shape " + shapeText(entry.shape) + " but config.json implies " +
                  shapeText(spec.shape));
    }
    if (entry.dtype != "F32" && entry.dtype != "BF16" && entry.dtype != "F16") {
      throw Error(out.source.fileOf(it->second) + ": tensor '" + it->second + "' has dtype " + entry.dtype + "; weights must be F32, BF16 or F16");
    }
  }
  for (const auto& [canonical, stored] : out.canonicalToStored) {
    if (!expectedNames.count(canonical)) out.summary.warnings.push_back("unused tensor '" + stored + "' in " + out.source.fileOf(stored));
  }
  return out;
}

}  // namespace

const at::Tensor& Weights::operator[](const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error("weight '" + name + "' is not loaded");
  return it->second;
}

std::vector<WeightSpec> expectedWeights(const ModelConfig& config) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  const int64_t merged = v.hidden * v.spatialMergeSize * v.spatialMergeSize;
  std::vector<WeightSpec> specs;
  const std::string vp = "model.visual.";
  specs.push_back({vp + "patch_embed.proj.weight", {v.hidden, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize}});
  specs.push_back({vp + "patch_embed.proj.bias", {v.hidden}});
  specs.push_back({vp + "pos_embed.weight", {v.numPositionEmbeddings, v.hidden}});
  for (int64_t i = 0; i < v.depth; ++i) {
    const std::string b = vp + "blocks." + std::to_string(i) + ".";
    for (const char* norm : {"norm1", "norm2"}) {
      specs.push_back({b + norm + ".weight", {v.hidden}});
      specs.push_back({b + norm + ".bias", {v.hidden}});
    }
    specs.push_back({b + "attn.qkv.weight", {3 * v.hidden, v.hidden}});
    specs.push_back({b + "attn.qkv.bias", {3 * v.hidden}});
    specs.push_back({b + "attn.proj.weight", {v.hidden, v.hidden}});
    specs.push_back({b + "attn.proj.bias", {v.hidden}});
    specs.push_back({b + "mlp.linear_fc1.weight", {v.intermediate, v.hidden}});
    specs.push_back({b + "mlp.linear_fc1.bias", {v.intermediate}});
    specs.push_back({b + "mlp.linear_fc2.weight", {v.hidden, v.intermediate}});
    specs.push_back({b + "mlp.linear_fc2.bias", {v.hidden}});
  }
  auto merger = [&](const std::string& prefix, int64_t normWidth) {
    specs.push_back({prefix + "norm.weight", {normWidth}});
    specs.push_back({prefix + "norm.bias", {normWidth}});
    specs.push_back({prefix + "linear_fc1.weight", {merged, merged}});
    specs.push_back({prefix + "linear_fc1.bias", {merged}});
    specs.push_back({prefix + "linear_fc2.weight", {v.outHidden, merged}});
    specs.push_back({prefix + "linear_fc2.bias", {v.outHidden}});
  };
  merger(vp + "merger.", v.hidden);
  for (size_t j = 0; j < v.deepstackIndexes.size(); ++j) merger(vp + "deepstack_merger_list." + std::to_string(j) + ".", merged);

  const std::string tp = "model.language_model.";
  specs.push_back({tp + "embed_tokens.weight", {t.vocabSize, t.hidden}});
  for (int64_t l = 0; l < t.layers; ++l) {
    const std::string p = tp + "layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {t.hidden}});
    specs.push_back({p + "self_attn.q_proj.weight", {t.heads * t.headDim, t.hidden}});
    specs.push_back({p + "self_attn.k_proj.weight", {t.kvHeads * t.headDim, t.hidden}});
    specs.push_back({p + "self_attn.v_proj.weight", {t.kvHeads * t.headDim, t.hidden}});
    specs.push_back({p + "self_attn.o_proj.weight", {t.hidden, t.heads * t.headDim}});
    if (t.attentionBias) {
      specs.push_back({p + "self_attn.q_proj.bias", {t.heads * t.headDim}});
      specs.push_back({p + "self_attn.k_proj.bias", {t.kvHeads * t.headDim}});
      specs.push_back({p + "self_attn.v_proj.bias", {t.kvHeads * t.headDim}});
      specs.push_back({p + "self_attn.o_proj.bias", {t.hidden}});
    }
    specs.push_back({p + "self_attn.q_norm.weight", {t.headDim}});
    specs.push_back({p + "self_attn.k_norm.weight", {t.headDim}});
    specs.push_back({p + "post_attention_layernorm.weight", {t.hidden}});
    specs.push_back({p + "mlp.gate_proj.weight", {t.intermediate, t.hidden}});
    specs.push_back({p + "mlp.up_proj.weight", {t.intermediate, t.hidden}});
    specs.push_back({p + "mlp.down_proj.weight", {t.hidden, t.intermediate}});
  }
  specs.push_back({tp + "norm.weight", {t.hidden}});
  if (!config.tieWordEmbeddings) specs.push_back({"lm_head.weight", {t.vocabSize, t.hidden}});
  return specs;
}

CheckpointSummary validateCheckpoint(const std::string& dir, const ModelConfig& config) { return resolve(dir, config).summary; }

Weights loadWeights(const std::string& dir, const ModelConfig& config, at::Device device, at::ScalarType dtype) {
  Resolved resolved = resolve(dir, config);
  Weights weights;
  weights.files = resolved.summary.files;
  weights.warnings = resolved.summary.warnings;
  weights.headTied = resolved.summary.headTied;
  ModelConfig withHead = config;
  withHead.tieWordEmbeddings = weights.headTied;
  const auto specs = expectedWeights(withHead);
  for (size_t i = 0; i < specs.size(); ++i) {
    checkCancelled();
    const at::Tensor stored = resolved.source.tensor(resolved.canonicalToStored.at(specs[i].name));
    // Same dtype on CPU keeps the copy-on-write mapping (no copy); anything else converts once.
    weights.tensors[specs[i].name] = stored.to(device, dtype);
    reportProgress(static_cast<double>(i + 1) / static_cast<double>(specs.size()));
  }
  if (weights.headTied) weights.tensors["lm_head.weight"] = weights.tensors.at("model.language_model.embed_tokens.weight");
  return weights;
}

}  // namespace pigg

#include <filesystem>
#include <nlohmann/json.hpp>

#include "storage.h"

namespace pigg {

void saveCheckpoint(const std::string& dir, const ModelConfig& config, const std::map<std::string, at::Tensor>& tensors, bool headTied,
                    const std::string& sourceDir, at::ScalarType dtype, int64_t maxShardBytes) {
  namespace fs = std::filesystem;
  ModelConfig layout = config;
  layout.tieWordEmbeddings = headTied;
  // Shards in the order of expectedWeights (vision first, then text), each at most maxShardBytes.
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  int64_t shardBytes = 0, totalBytes = 0;
  for (const auto& spec : expectedWeights(layout)) {
    auto it = tensors.find(spec.name);
    if (it == tensors.end()) throw Error("cannot save checkpoint: weight '" + spec.name + "' is missing");
    at::Tensor tensor = it->second.detach().to(dtype);
    const int64_t bytes = tensor.numel() * tensor.element_size();
    if (shardBytes > 0 && shardBytes + bytes > maxShardBytes) {
      shards.emplace_back();
      shardBytes = 0;
    }
    shards.back().emplace_back(spec.name, tensor);
    shardBytes += bytes;
    totalBytes += bytes;
  }
  nlohmann::json configJson = config.raw;
  const std::string dtypeName = dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
  configJson["dtype"] = dtypeName;
  if (configJson.contains("torch_dtype")) configJson["torch_dtype"] = dtypeName;
  configJson["tie_word_embeddings"] = headTied;
  if (configJson.contains("text_config")) {
    configJson["text_config"]["tie_word_embeddings"] = headTied;
    configJson["text_config"]["dtype"] = dtypeName;
  }
  writeFolderAtomically(dir, [&](const std::string& temp) {
    if (!sourceDir.empty()) {
      for (const char* name : {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json", "chat_template.jinja",
                               "preprocessor_config.json", "video_preprocessor_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                               "added_tokens.json"}) {
        const fs::path from = fs::path(sourceDir) / name;
        if (fs::exists(from)) fs::copy_file(from, fs::path(temp) / name, fs::copy_options::overwrite_existing);
      }
    }
    writeTextFile(temp + "/config.json", configJson.dump(2));
    if (shards.size() == 1) {
      writeSafetensors(temp + "/model.safetensors", shards[0]);
      return;
    }
    nlohmann::json weightMap = nlohmann::json::object();
    char name[64];
    for (size_t i = 0; i < shards.size(); ++i) {
      std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      writeSafetensors(temp + "/" + name, shards[i]);
      for (const auto& [tensorName, tensor] : shards[i]) weightMap[tensorName] = name;
    }
    const nlohmann::json index = {{"metadata", {{"total_size", totalBytes}}}, {"weight_map", weightMap}};
    writeTextFile(temp + "/model.safetensors.index.json", index.dump(2));
  });
}

std::map<std::string, at::Tensor> randomWeights(const ModelConfig& config, at::ScalarType dtype, at::Device device, uint64_t seed, double std) {
  at::Generator generator = at::globalContext().defaultGenerator(device);
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_current_seed(seed);
  }
  std::map<std::string, at::Tensor> out;
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  for (const auto& spec : expectedWeights(config)) {
    const std::string& name = spec.name;
    const bool isBias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool isNorm = name.find("norm") != std::string::npos;
    if (isBias) {
      out[name] = at::zeros(spec.shape, options);
    } else if (isNorm) {
      out[name] = at::ones(spec.shape, options);
    } else {
      out[name] = at::empty(spec.shape, at::TensorOptions().dtype(at::kFloat).device(device)).normal_(0.0, std, generator).to(dtype);
    }
  }
  return out;
}

}  // namespace pigg
