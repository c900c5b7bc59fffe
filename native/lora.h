// LoRA on the language model's linear layers, in peft's layout: A [r, in] Kaiming-uniform, B [out, r] zeros,
// scale alpha / r, dropout on the adapter input; adapters in fp32; saved and loaded in PEFT's format
// (adapter_config.json + adapter_model.safetensors) so Python can load them; merged into the base weights.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "options.h"
#include "text.h"

namespace pigg {

// Every linear layer of the decoder with its HF module path, layer by layer in kLayerLinears order
// (q, k, v, o, gate, up, down): linear i is projection i % kLayerLinears of layer i / kLayerLinears.
constexpr int64_t kLayerLinears = 7;
std::vector<std::pair<std::string, Linear*>> decoderLinears(TextDecoder& decoder);

// The decoder's linear layers that carry (or would carry) an adapter, with their HF module paths.
std::vector<std::pair<std::string, Linear*>> loraTargets(TextDecoder& decoder, const std::vector<std::string>& targets);

// A PEFT adapter as read from its folder and checked against the decoder: fp32 A [r, in] and B [out, r] on the
// CPU per decoder linear (decoderLinears order), undefined where the adapter has none.
struct LoraWeights {
  LoraOptions options;
  std::vector<at::Tensor> a, b;
  double scale() const { return options.alpha / static_cast<double>(options.rank); }
};
LoraWeights readLoraAdapter(TextDecoder& decoder, const std::string& dir);

// Attaches fresh adapters (A random from `generator`, B zeros) to every target.
void attachLora(TextDecoder& decoder, const LoraOptions& options, at::Generator generator);

// Writes adapter_config.json + adapter_model.safetensors (atomically) with peft's key names.
void saveLoraAdapter(TextDecoder& decoder, const LoraOptions& options, const std::string& dir, const std::string& baseModel);

// Reads a PEFT adapter folder and attaches it to the decoder's layers; returns its options.
LoraOptions loadLoraAdapter(TextDecoder& decoder, const std::string& dir);

// W += scale * B A (computed in fp32, rounded once to W's dtype) and the adapters are removed.
void mergeLora(TextDecoder& decoder);

}  // namespace pigg
