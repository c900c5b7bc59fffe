#include "lora.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "safetensors.h"
#include "storage.h"

namespace pigg {
namespace {

using json = nlohmann::json;

const std::string kPeftPrefix = "base_model.model.";
// alpha / r beyond this is no adapter anyone trained (PIGG's is 4): it only turns activations into infinities.
constexpr double kMaxLoraScale = 1024;

}  // namespace

std::vector<std::pair<std::string, Linear*>> decoderLinears(TextDecoder& decoder) {
  std::vector<std::pair<std::string, Linear*>> out;
  auto& layers = decoder.mutableLayers();
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string p = "model.language_model.layers." + std::to_string(l) + ".";
    DecoderLayer& L = layers[l];
    out.emplace_back(p + "self_attn.q_proj", &L.q);
    out.emplace_back(p + "self_attn.k_proj", &L.k);
    out.emplace_back(p + "self_attn.v_proj", &L.v);
    out.emplace_back(p + "self_attn.o_proj", &L.o);
    out.emplace_back(p + "mlp.gate_proj", &L.gate);
    out.emplace_back(p + "mlp.up_proj", &L.up);
    out.emplace_back(p + "mlp.down_proj", &L.down);
  }
  return out;
}

std::vector<std::pair<std::string, Linear*>> loraTargets(TextDecoder& decoder, const std::vector<std::string>& targets) {
  std::vector<std::pair<std::string, Linear*>> out;
  for (auto& [name, linear] : decoderLinears(decoder)) {
    const std::string leaf = name.substr(name.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), leaf) != targets.end() || std::find(targets.begin(), targets.end(), "all-linear") != targets.end()) {
      out.emplace_back(name, linear);
    }
  }
  return out;
}

void attachLora(TextDecoder& decoder, const LoraOptions& options, at::Generator generator) {
  if (options.rank < 1) throw Error("LoRA rank must be at least 1");
  const auto targets = loraTargets(decoder, options.targets);
  if (targets.empty()) throw Error("LoRA targets match no linear layer of the language model");
  for (auto& [name, linear] : targets) {
    const int64_t out = linear->weight.size(0), in = linear->weight.size(1);
    const auto options32 = at::TensorOptions().dtype(at::kFloat).device(linear->weight.device());
    // kaiming_uniform_(a=sqrt(5)) as peft/nn.Linear: bound = 1/sqrt(fan_in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    linear->loraA = at::empty({options.rank, in}, options32).uniform_(-bound, bound, generator);
    linear->loraB = at::zeros({out, options.rank}, options32);
    linear->loraScale = options.alpha / static_cast<double>(options.rank);
    linear->loraDropout = options.dropout;
  }
}

void saveLoraAdapter(TextDecoder& decoder, const LoraOptions& options, const std::string& dir, const std::string& baseModel) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (auto& [name, linear] : loraTargets(decoder, options.targets)) {
    if (!linear->hasLora()) continue;
    tensors.emplace_back(kPeftPrefix + name + ".lora_A.weight", linear->loraA);
    tensors.emplace_back(kPeftPrefix + name + ".lora_B.weight", linear->loraB);
  }
  if (tensors.empty()) throw Error("no LoRA adapter is attached");
  const json config = {{"peft_type", "LORA"},          {"task_type", "CAUSAL_LM"},          {"r", options.rank},
                       {"lora_alpha", options.alpha},   {"lora_dropout", options.dropout}, {"target_modules", options.targets},
                       {"bias", "none"},                {"fan_in_fan_out", false},          {"inference_mode", true},
                       {"init_lora_weights", true},     {"modules_to_save", nullptr},      {"use_rslora", false},
                       {"use_dora", false},             {"rank_pattern", json::object()},  {"alpha_pattern", json::object()},
                       {"base_model_name_or_path", baseModel}, {"revision", nullptr},     {"layers_to_transform", nullptr},
                       {"layers_pattern", nullptr}};
  writeFolderAtomically(dir, [&](const std::string& temp) {
    writeSafetensors(temp + "/adapter_model.safetensors", tensors);
    writeTextFile(temp + "/adapter_config.json", config.dump(2));
  });
}

LoraWeights readLoraAdapter(TextDecoder& decoder, const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path configPath = fs::path(dir) / "adapter_config.json";
  const json config = readJsonFile(configPath.string(), "is " + dir + " a PEFT adapter folder?");
  if (config.value("peft_type", "") != "LORA") throw Error(configPath.string() + ": peft_type is not LORA");
  LoraWeights weights;
  LoraOptions& options = weights.options;
  // Checked, not converted: nlohmann would read r 8.5 as 8 and a string alpha as an exception without the file's name.
  if (config.contains("r") && !config["r"].is_number_integer()) throw Error(configPath.string() + ": r must be an integer, got " + config["r"].dump());
  if (config.contains("lora_alpha") && !config["lora_alpha"].is_number()) throw Error(configPath.string() + ": lora_alpha must be a number, got " + config["lora_alpha"].dump());
  options.rank = config.value("r", int64_t{8});
  options.alpha = config.value("lora_alpha", 8.0);
  options.dropout = config.value("lora_dropout", 0.0);
  if (options.rank < 1) throw Error(configPath.string() + ": r must be at least 1");
  if (!std::isfinite(options.alpha) || options.alpha <= 0 || options.alpha / static_cast<double>(options.rank) > kMaxLoraScale) {
    throw Error(configPath.string() + ": lora_alpha must be a finite number in (0, " + std::to_string(static_cast<int>(kMaxLoraScale)) + " * r]");
  }
  if (config.contains("target_modules") && config["target_modules"].is_array()) options.targets = config["target_modules"].get<std::vector<std::string>>();
  if (config.contains("target_modules") && config["target_modules"].is_string()) options.targets = {config["target_modules"].get<std::string>()};
  const auto linears = decoderLinears(decoder);
  for (const auto& target : options.targets) {
    const bool known = target == "all-linear" || std::any_of(linears.begin(), linears.end(), [&](const auto& named) {
      return named.first.substr(named.first.rfind('.') + 1) == target;
    });
    if (!known) throw Error(configPath.string() + ": target_modules names '" + target + "', which is no linear layer of this model's decoder");
  }
  const TensorSource source = TensorSource::openFile((fs::path(dir) / "adapter_model.safetensors").string());
  weights.a.resize(linears.size());
  weights.b.resize(linears.size());
  size_t found = 0;
  const auto targets = loraTargets(decoder, options.targets);
  for (size_t i = 0; i < linears.size(); ++i) {
    const auto& [name, linear] = linears[i];
    if (std::none_of(targets.begin(), targets.end(), [&](const auto& target) { return target.second == linear; })) continue;
    const std::string a = kPeftPrefix + name + ".lora_A.weight", b = kPeftPrefix + name + ".lora_B.weight";
    if (!source.has(a) || !source.has(b)) continue;
    const at::Tensor loraA = source.tensor(a), loraB = source.tensor(b);
    if (loraA.dim() != 2 || loraB.dim() != 2 || loraA.size(0) != options.rank || loraA.size(1) != linear->weight.size(1) ||
        loraB.size(0) != linear->weight.size(0) || loraB.size(1) != options.rank) {
      throw Error(source.fileOf(a) + ": adapter '" + name + "' does not fit its layer (rank " + std::to_string(options.rank) + ")");
    }
    weights.a[i] = loraA.to(at::kFloat).clone();
    weights.b[i] = loraB.to(at::kFloat).clone();
    if (!at::isfinite(weights.a[i]).all().item<bool>() || !at::isfinite(weights.b[i]).all().item<bool>()) {
      throw Error(source.fileOf(a) + ": adapter '" + name + "' holds NaN or infinite weights");
    }
    ++found;
  }
  if (found == 0) throw Error(dir + ": adapter_model.safetensors holds no LoRA weights for this model's layers");
  return weights;
}

LoraOptions loadLoraAdapter(TextDecoder& decoder, const std::string& dir) {
  const LoraWeights weights = readLoraAdapter(decoder, dir);
  const auto linears = decoderLinears(decoder);
  for (size_t i = 0; i < linears.size(); ++i) {
    if (!weights.a[i].defined()) continue;
    Linear* linear = linears[i].second;
    linear->loraA = weights.a[i].to(linear->weight.device());
    linear->loraB = weights.b[i].to(linear->weight.device());
    linear->loraScale = weights.scale();
    linear->loraDropout = weights.options.dropout;
  }
  return weights.options;
}

void mergeLora(TextDecoder& decoder) {
  at::NoGradGuard noGrad;
  for (auto& [name, linear] : decoderLinears(decoder)) {
    if (!linear->hasLora()) continue;
    const at::Tensor delta = at::matmul(linear->loraB, linear->loraA) * linear->loraScale;
    linear->weight.copy_((linear->weight.to(at::kFloat) + delta).to(linear->weight.scalar_type()));
    linear->loraA = at::Tensor();
    linear->loraB = at::Tensor();
  }
}

}  // namespace pigg
