// The options of the engine's calls (loading, generation, sampling, training) as plain torch-free structs. Their
// defaults are written here once. describe() lists each struct's fields under the names they have in JS, so the
// binding reads a JS object into a struct field by field (naming unknown keys) and reports the defaults back.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "control.h"
#include "sampling_options.h"

namespace pigg {

class Grammar;  // grammar.h

struct LoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1"
  std::string dtype = "fp32";  // "fp32" or "bf16"
  int threads = 0;             // CPU threads for libtorch; 0 = all cores
  bool allowTf32 = false;      // fp32 on CUDA: TF32 matmuls are off unless asked for (parity)
};

struct GenerateOptions {
  int64_t maxNewTokens = 512;
  std::vector<int64_t> eosTokenIds;  // empty: never stop early
  bool useConfigEos = true;          // no eosTokenIds given: api::generate puts in the model's (config.json + generation_config.json)
  bool returnStepLogits = false;
  // Per row, each empty or one entry per row: the row's registered adapter ("" = the base model), its grammar
  // (null = unconstrained), and a control whose abort stops that row alone.
  std::vector<std::string> rowAdapters;
  std::vector<std::shared_ptr<const Grammar>> rowGrammars;
  std::vector<std::shared_ptr<CallControl>> rowControls;
  // Empty (every row greedy) or one entry per row: temperature 0 is greedy (picker.h).
  std::vector<SamplingOptions> rowSampling;
  // Called after each step with that step's token of every row (streaming); finished rows repeat the pad id.
  std::function<void(const std::vector<int64_t>&)> onStep;
};

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 32.0;
  double dropout = 0.1;
  // Module names as peft matches them: all linear layers of the language model by default.
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
};

struct TrainableSpec {
  bool vision = false;       // patch embedding, position table, vision blocks
  bool aligner = false;      // merger and DeepStack mergers
  bool embeddings = true;    // embed_tokens (and a tied head)
  bool lmHead = true;        // an untied lm_head
  int64_t lastLayers = -1;   // -1: every decoder layer (and the final norm); N: only the last N
};

// How bf16 weights receive updates too small for bf16 (an lr-1e-6 step is below half an ulp of a typical weight).
enum class UpdateMode { Master, Kahan, Stochastic, Pure };
UpdateMode parseUpdateMode(const std::string& name);
const char* updateModeName(UpdateMode mode);

struct TrainerOptions {
  double learningRate = 2e-5;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  double weightDecay = 0.0;
  double maxGradNorm = 1.0;  // <= 0 disables clipping
  int64_t warmupSteps = 0;
  int64_t totalSteps = 0;    // optimizer steps of the whole run (for the decay)
  std::string schedule = "linear";  // linear | cosine | constant
  double minLrRatio = 0.0;   // cosine floor, as a fraction of the peak
  bool gradientCheckpointing = true;
  // The loss through lm_head in row chunks without the [rows, vocabulary] logits (native/head_loss.h); false: the
  // plain logits + cross-entropy, for comparison. Same loss either way.
  bool fusedHeadLoss = true;
  int64_t headLossChunkRows = 0;  // 0: automatic
  UpdateMode updateMode = UpdateMode::Master;
  TrainableSpec trainable;
  bool lora = false;              // JS: the presence of the `lora` object
  LoraOptions loraOptions;
  bool loraOnly = true;           // LoRA only: the base model stays frozen
  // LoRA only: a PEFT adapter folder to start from (its rank, alpha and targets replace loraOptions').
  std::string loraInit;
  // LoRA only, base frozen: the adapter is in the layers only during this trainer's own calls, so the model
  // serves its base weights (and per-row adapters) between steps: training beside inference.
  bool loraAside = false;
  uint64_t seed = 42;
};

// describe(fields, options) calls fields(jsName, member) for every field JS sets, fields.object(jsName, fn) for a
// nested object (fn(fields) describes it), and fields.optionalObject(jsName, present, fn) for a nested object whose
// presence is a switch. The per-row generate lists carry JS objects (grammars, controls, a callback): the binding
// reads those itself.
template <typename Fields>
void describe(Fields& f, LoadOptions& o) {
  f("device", o.device);
  f("dtype", o.dtype);
  f("threads", o.threads);
  f("allowTf32", o.allowTf32);
}

template <typename Fields>
void describe(Fields& f, GenerateOptions& o) {
  f("maxNewTokens", o.maxNewTokens);
  f.stopIds("eosTokenIds", o.eosTokenIds, o.useConfigEos);
  f("returnStepLogits", o.returnStepLogits);
}

template <typename Fields>
void describe(Fields& f, SamplingOptions& o) {
  f("temperature", o.temperature);
  f("topP", o.topP);
  f("topK", o.topK);
  f("repetitionPenalty", o.repetitionPenalty);
  f("seed", o.seed);
}

template <typename Fields>
void describe(Fields& f, TrainerOptions& o) {
  f("learningRate", o.learningRate);
  f("beta1", o.beta1);
  f("beta2", o.beta2);
  f("epsilon", o.epsilon);
  f("weightDecay", o.weightDecay);
  f("maxGradNorm", o.maxGradNorm);
  f("warmupSteps", o.warmupSteps);
  f("totalSteps", o.totalSteps);
  f("schedule", o.schedule);
  f("minLrRatio", o.minLrRatio);
  f("gradientCheckpointing", o.gradientCheckpointing);
  f("fusedHeadLoss", o.fusedHeadLoss);
  f("headLossChunkRows", o.headLossChunkRows);
  f("updateMode", o.updateMode);
  f("seed", o.seed);
  f.object("trainable", [&](Fields& t) {
    t("vision", o.trainable.vision);
    t("aligner", o.trainable.aligner);
    t("embeddings", o.trainable.embeddings);
    t("lmHead", o.trainable.lmHead);
    t("lastLayers", o.trainable.lastLayers);
  });
  f.optionalObject("lora", o.lora, [&](Fields& l) {
    l("rank", o.loraOptions.rank);
    l("alpha", o.loraOptions.alpha);
    l("dropout", o.loraOptions.dropout);
    l("targets", o.loraOptions.targets);
    l("loraOnly", o.loraOnly);
    l("init", o.loraInit);
    l("aside", o.loraAside);
  });
}

}  // namespace pigg
