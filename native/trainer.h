// Fine-tuning Qwen3-VL with the Hugging Face Trainer's semantics: loss per micro-batch divided by the number of
// accumulated micro-batches, gradient clipping, AdamW (decay on all but biases and norm weights) through torch's
// fused kernel as transformers' default optimizer, linear or cosine schedules with warmup. The text decoder is
// trained through per-layer gradient checkpointing; the vision tower and the mergers stay frozen unless asked
// otherwise. bf16 weights take updates through fp32 master weights (default), Kahan compensation, stochastic
// rounding, or plainly (PIGG's setting).
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lora.h"
#include "model.h"
#include "options.h"

namespace pigg {

struct StepReport {
  int64_t step = 0;          // optimizer steps done, this one included
  double loss = 0.0;         // mean micro-batch loss
  double learningRate = 0.0;
  double gradNorm = 0.0;     // before clipping
  int64_t tokens = 0;        // supervised tokens
  int64_t inputTokens = 0;   // attended input tokens
  int64_t microBatches = 0;
  double seconds = 0.0;
  double optimizerSeconds = 0.0;  // the clipping and the AdamW update, within seconds
};

class Trainer {
 public:
  Trainer(Qwen3VL& model, const TrainerOptions& options);

  // One optimizer step over the given micro-batches (Trainer semantics: each loss divided by their count).
  StepReport step(const std::vector<ModelInputs>& microBatches);
  // One forward + backward without an update; returns the gradients of the named parameters (fixtures).
  TensorMap gradients(const ModelInputs& batch, const std::vector<std::string>& names);
  double learningRateAt(int64_t step) const;

  // A checkpoint transformers can load (full fine-tune), or a PEFT adapter folder (LoRA).
  void save(const std::string& dir, bool mergeAdapter = false);
  // Everything needed to resume: weights or adapter, optimizer moments, master/compensation tensors, step, RNG.
  void saveState(const std::string& dir);
  void loadState(const std::string& dir);

  int64_t stepsDone() const { return step_; }
  int64_t trainableParameters() const;
  std::vector<std::string> trainableNames() const;
  const TrainerOptions& options() const { return options_; }

 private:
  struct Parameter {
    std::string name;
    at::Tensor value;        // the tensor the model computes with (requires_grad)
    at::Tensor master;       // fp32 copy (UpdateMode::Master on low-precision weights)
    at::Tensor compensation; // Kahan residual (UpdateMode::Kahan)
    at::Tensor expAvg, expAvgSq;
    bool decay = true;
  };

  // Loss of one micro-batch and its backward, scaled by `scale`; returns the (unscaled) loss.
  double forwardBackward(const ModelInputs& batch, double scale, int64_t* supervisedTokens);
  void applyAdamW(double learningRate);
  void registerParameter(const std::string& name, const at::Tensor& value);

  // The trainer's adapter, swapped into the layers for the scope of one call (loraAside); a no-op otherwise.
  class AsideScope {
   public:
    explicit AsideScope(Trainer& trainer);
    ~AsideScope();
    AsideScope(const AsideScope&) = delete;
    AsideScope& operator=(const AsideScope&) = delete;

   private:
    Trainer& trainer_;
  };
  void swapAside();
  struct AsideAdapter {
    Linear* linear;
    Linear held;  // the trainer's adapter fields while out of the layer; the layer's own while in it
  };

  Qwen3VL& model_;
  TrainerOptions options_;
  std::vector<Parameter> parameters_;
  std::vector<AsideAdapter> aside_;
  int asideDepth_ = 0;
  std::vector<bool> layerTrainable_;
  int64_t step_ = 0;
  at::Generator generator_;
};


}  // namespace pigg
