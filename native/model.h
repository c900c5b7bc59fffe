// Qwen3VLForConditionalGeneration: the vision tower and text decoder joined (image rows scattered into the
// image-token positions, DeepStack features added after the first decoder layers), the causal-LM loss, and
// greedy generation with a KV cache.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "adapters.h"
#include "checkpoint.h"
#include "config.h"
#include "control.h"
#include "grammar.h"
#include "options.h"
#include "text.h"
#include "vision.h"

namespace pigg {

struct ModelInputs {
  at::Tensor inputIds;       // int64 [B, L]
  at::Tensor attentionMask;  // int64 [B, L], optional (all ones)
  at::Tensor labels;         // int64 [B, L], optional; aligned with inputIds (not shifted), -100 = ignore
  at::Tensor pixelValues;    // float [Np, C*Tp*P*P], optional
  at::Tensor imageGridThw;   // int64 [n_images, 3], optional
};

using TensorMap = std::map<std::string, at::Tensor>;

// What a caller adds around each layer of Qwen3VL::runLayers: it gets the layer's index and input and must call
// `run` (the layer with its DeepStack add) and return its output. Training records a graph only where needed and
// keeps layer inputs and RNG states for checkpointing; forward keeps every layer's output.
using LayerRun = std::function<at::Tensor(const at::Tensor& input)>;
using LayerHook = std::function<at::Tensor(int64_t layer, const at::Tensor& input, const LayerRun& run)>;

// The forward-output names of the fixture layout.
const std::set<std::string>& forwardOutputNames();

class Qwen3VL {
 public:
  static std::unique_ptr<Qwen3VL> load(const std::string& dir, const LoadOptions& options);

  // Runs the model on a batch and returns the requested outputs by name (see forwardOutputNames()).
  TensorMap forward(const ModelInputs& inputs, const std::set<std::string>& outputs);
  // Greedy or sampled decoding of left-padded prompts: generate.tokens, generate.step_logits (if asked),
  // generate.fed_position_ids, generate.rope_deltas, generate.rope_deltas_unpadded, generate.aborted (bool per
  // row) and generate.timing (f64 seconds: vision, prefill, decode; device-synchronized).
  TensorMap generate(const ModelInputs& prompts, const GenerateOptions& options);

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  Weights& mutableWeights() { return weights_; }
  TextDecoder& text() { return *text_; }
  AdapterRegistry& adapters() { return *adapters_; }
  const VisionTower& vision() const { return *vision_; }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  const std::string& dir() const { return dir_; }

  // Validates ids/mask/labels/images against each other and the config (one precise Error).
  void validate(const ModelInputs& inputs) const;
  // Token embeddings with the vision rows written into the image-token positions.
  at::Tensor embedWithImages(const at::Tensor& inputIds, const VisionOutputs& vision, at::Tensor* visualIndex) const;
  // Decoder layer l on hidden, then DeepStack feature l (if any) added at the visual positions; with a cache the
  // layer writes its keys/values into it (TextDecoder::layer); training turns LoRA dropout on. Checks for an abort first.
  at::Tensor runLayer(int64_t l, const at::Tensor& hidden, const AttentionContext& context, const at::Tensor& visualIndex,
                      const std::vector<at::Tensor>& deepstack, KVCache* cache = nullptr, bool training = false);
  // Every decoder layer in order through runLayer; `around` (if given) wraps each one (see LayerHook).
  at::Tensor runLayers(at::Tensor hidden, const AttentionContext& context, const at::Tensor& visualIndex,
                       const std::vector<at::Tensor>& deepstack, KVCache* cache = nullptr, const LayerHook& around = nullptr,
                       bool training = false);
  // Rotary tables (compute dtype) and the additive mask (undefined when none is needed) of a full forward.
  AttentionContext attentionContext(const at::Tensor& positionIds, const at::Tensor& attentionMask) const;

 private:
  Qwen3VL() = default;
  std::string dir_;
  ModelConfig config_;
  Weights weights_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  at::Tensor invFreq_;
  std::unique_ptr<VisionTower> vision_;
  std::unique_ptr<TextDecoder> text_;
  std::unique_ptr<AdapterRegistry> adapters_;
};

// transformers' ForCausalLMLoss: fp32 logits, labels shifted left, -100 ignored, mean over all targets.
at::Tensor causalLmLoss(const at::Tensor& logits, const at::Tensor& labels);

// DeepStack: hidden.flat[visualIndex] += feature (out of place, so autograd flows through).
at::Tensor addAtPositions(const at::Tensor& hidden, const at::Tensor& visualIndex, const at::Tensor& feature);

}  // namespace pigg
