// The trainer: which weights train, the step (forward through the model's layer loop, checkpointed backward,
// the fused head loss), AdamW and its update modes, schedules, saving and state. Near 500 lines because the step
// and the optimizer share the parameter list and its bookkeeping; the loss is in head_loss.cpp, LoRA in lora.cpp.
#include "trainer.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>

#include "device.h"
#include "error.h"
#include "head_loss.h"
#include "rope.h"
#include "safetensors.h"
#include "storage.h"

namespace pigg {
namespace {

using json = nlohmann::json;

bool isLoraName(const std::string& name) { return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos; }

// transformers' Trainer decays every weight except biases and norm weights (LayerNorm modules and names
// matching its norm patterns).
bool decays(const std::string& name) {
  static const std::regex noDecay(R"(bias|layernorm|rmsnorm|(^|\.)norm[12]?($|\.)|_norm($|\.))");
  return !std::regex_search(name, noDecay);
}

at::Tensor stochasticRound(const at::Tensor& value32, at::Generator& generator) {
  // Add uniform noise below the bf16 cut, then truncate: rounds up with probability equal to the remainder.
  const at::Tensor bits = value32.contiguous().view(at::kInt);
  const at::Tensor noise = at::randint(0, 1 << 16, value32.sizes(), generator, at::TensorOptions().dtype(at::kInt).device(value32.device()));
  return ((bits + noise) & static_cast<int32_t>(0xFFFF0000)).view(at::kFloat).to(at::kBFloat16);
}

}  // namespace

Trainer::Trainer(Qwen3VL& model, const TrainerOptions& options)
    : model_(model), options_(options), generator_(at::globalContext().defaultGenerator(model.device()).clone()) {
  if (options.schedule != "linear" && options.schedule != "cosine" && options.schedule != "constant") {
    throw Error("unknown schedule '" + options.schedule + "' (use linear, cosine or constant)");
  }
  if (options.learningRate < 0 || options.warmupSteps < 0) throw Error("learning rate and warmup steps must not be negative");
  generator_.set_current_seed(options.seed);
  {
    // LoRA dropout draws from the device's default generator: seed it as well (transformers' Trainer calls
    // set_seed(args.seed)), so a run repeats from its seed wherever it starts in the process.
    at::Generator device = at::globalContext().defaultGenerator(model.device());
    std::lock_guard<std::mutex> lock(device.mutex());
    device.set_current_seed(options.seed);
  }
  const TrainableSpec& spec = options.trainable;
  const bool baseFrozen = options.lora && options.loraOnly;
  const int64_t layers = model.config().text.layers;
  const int64_t firstTrainable = baseFrozen ? layers : (spec.lastLayers < 0 ? 0 : std::max<int64_t>(0, layers - spec.lastLayers));
  layerTrainable_.assign(layers, false);
  for (auto& [name, tensor] : model.mutableWeights().tensors) tensor.requires_grad_(false);
  for (const auto& [name, tensor] : model.weights().tensors) {
    bool trainable = false;
    if (name.rfind("model.visual.merger.", 0) == 0 || name.rfind("model.visual.deepstack_merger_list.", 0) == 0) {
      trainable = spec.aligner;
    } else if (name.rfind("model.visual.", 0) == 0) {
      trainable = spec.vision;
    } else if (baseFrozen) {
      trainable = false;
    } else if (name == "model.language_model.embed_tokens.weight") {
      trainable = spec.embeddings;
    } else if (name == "lm_head.weight") {
      trainable = spec.lmHead && !model.weights().headTied;
    } else if (name == "model.language_model.norm.weight") {
      trainable = firstTrainable < layers;
    } else {
      const std::string prefix = "model.language_model.layers.";
      const int64_t index = std::stoll(name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size()));
      trainable = index >= firstTrainable;
      if (trainable) layerTrainable_[index] = true;
    }
    if (trainable) registerParameter(name, tensor);
  }
  if (options.lora) {
    if (options.loraAside && !baseFrozen) throw Error("loraAside trains beside inference, so the base model must stay frozen (loraOnly)");
    if (!options.loraInit.empty()) {
      // Continue from an adapter: its weights, rank, alpha and targets (the dropout stays this run's).
      const LoraWeights init = readLoraAdapter(model.text(), options.loraInit);
      options_.loraOptions.rank = init.options.rank;
      options_.loraOptions.alpha = init.options.alpha;
      options_.loraOptions.targets = init.options.targets;
      attachLora(model.text(), options_.loraOptions, generator_);
      const auto linears = decoderLinears(model.text());
      for (size_t i = 0; i < linears.size(); ++i) {
        if (!linears[i].second->hasLora()) continue;
        if (!init.a[i].defined()) throw Error(options.loraInit + ": the adapter has no weights for " + linears[i].first);
        linears[i].second->loraA.copy_(init.a[i]);
        linears[i].second->loraB.copy_(init.b[i]);
      }
    } else {
      attachLora(model.text(), options_.loraOptions, generator_);
    }
    for (auto& [name, linear] : loraTargets(model.text(), options_.loraOptions.targets)) {
      registerParameter(name + ".lora_A.weight", linear->loraA);
      registerParameter(name + ".lora_B.weight", linear->loraB);
      if (options.loraAside) aside_.push_back({linear, Linear{}});
    }
    std::fill(layerTrainable_.begin(), layerTrainable_.end(), true);
    swapAside();  // aside: the adapter leaves the layers now, and comes back only inside this trainer's calls
  }
  if (parameters_.empty()) throw Error("the trainable-parameter setup leaves nothing to train");
}

// Nested scopes (saveState saves the adapter through save) swap only at the outermost one.
Trainer::AsideScope::AsideScope(Trainer& trainer) : trainer_(trainer) {
  if (trainer_.asideDepth_++ == 0) trainer_.swapAside();
}
Trainer::AsideScope::~AsideScope() {
  if (--trainer_.asideDepth_ == 0) trainer_.swapAside();
}

void Trainer::swapAside() {
  for (auto& entry : aside_) {
    std::swap(entry.linear->loraA, entry.held.loraA);
    std::swap(entry.linear->loraB, entry.held.loraB);
    std::swap(entry.linear->loraScale, entry.held.loraScale);
    std::swap(entry.linear->loraDropout, entry.held.loraDropout);
  }
}

void Trainer::registerParameter(const std::string& name, const at::Tensor& value) {
  for (const auto& existing : parameters_) {
    if (existing.value.unsafeGetTensorImpl() == value.unsafeGetTensorImpl()) return;  // a tied head is the embedding
  }
  Parameter p;
  p.name = name;
  p.value = value;
  p.value.requires_grad_(true);
  p.decay = decays(name);
  const bool lowPrecision = value.scalar_type() != at::kFloat;
  const at::ScalarType momentType = lowPrecision && options_.updateMode == UpdateMode::Pure ? value.scalar_type() : at::kFloat;
  p.expAvg = at::zeros(value.sizes(), value.options().dtype(momentType).requires_grad(false));
  p.expAvgSq = at::zeros(value.sizes(), value.options().dtype(momentType).requires_grad(false));
  if (lowPrecision && options_.updateMode == UpdateMode::Master) p.master = value.detach().to(at::kFloat).clone();
  if (lowPrecision && options_.updateMode == UpdateMode::Kahan) p.compensation = at::zeros(value.sizes(), value.options().requires_grad(false));
  parameters_.push_back(std::move(p));
}

int64_t Trainer::trainableParameters() const {
  int64_t count = 0;
  for (const auto& p : parameters_) count += p.value.numel();
  return count;
}

std::vector<std::string> Trainer::trainableNames() const {
  std::vector<std::string> names;
  for (const auto& p : parameters_) names.push_back(p.name);
  return names;
}

double Trainer::learningRateAt(int64_t step) const {
  const double warmup = static_cast<double>(options_.warmupSteps);
  const double total = static_cast<double>(options_.totalSteps);
  const double k = static_cast<double>(step);
  double factor = 1.0;
  if (step < options_.warmupSteps) {
    factor = k / std::max(1.0, warmup);
  } else if (options_.schedule == "linear") {
    factor = std::max(0.0, (total - k) / std::max(1.0, total - warmup));
  } else if (options_.schedule == "cosine") {
    const double progress = (k - warmup) / std::max(1.0, total - warmup);
    factor = 0.5 * (1.0 + std::cos(M_PI * progress));
    factor = std::max(0.0, factor * (1.0 - options_.minLrRatio) + options_.minLrRatio);
  }
  return options_.learningRate * factor;
}

double Trainer::forwardBackward(const ModelInputs& batch, double scale, int64_t* supervisedTokens) {
  if (!batch.labels.defined()) throw Error("a training batch needs labels");
  model_.validate(batch);
  TextDecoder& decoder = model_.text();
  const bool visionTrainable = options_.trainable.vision || options_.trainable.aligner;
  VisionOutputs vision;
  if (batch.pixelValues.defined()) vision = model_.vision().forward(batch.pixelValues, batch.imageGridThw, false, visionTrainable);
  const at::Tensor ids = batch.inputIds.to(at::kCPU);
  const RopeIndex rope = ropeIndex(ids, batch.attentionMask.defined() ? batch.attentionMask.to(at::kCPU) : at::Tensor(),
                                   batch.imageGridThw.defined() ? batch.imageGridThw.to(at::kCPU) : at::Tensor(), model_.config());
  const AttentionContext context = model_.attentionContext(rope.positionIds, batch.attentionMask);
  // Targets first: logits are computed only where a target exists (the same loss as transformers' full
  // pass, without a [tokens, vocab] tensor for unsupervised positions).
  const at::Tensor labels = batch.labels.to(model_.device());
  const int64_t rows = labels.size(0), length = labels.size(1);
  const at::Tensor target = at::cat({labels.narrow(1, 1, length - 1), at::full({rows, 1}, -100, labels.options())}, 1).reshape({-1});
  const at::Tensor positions = (target != -100).nonzero().squeeze(1);
  *supervisedTokens = positions.numel();
  if (positions.numel() == 0) throw Error("a training batch has no supervised tokens (every label is -100)");
  const at::Tensor supervisedTargets = target.index_select(0, positions);
  auto headLoss = [&](const at::Tensor& hidden) {
    const at::Tensor normed = decoder.norm(hidden.reshape({-1, hidden.size(-1)}).index_select(0, positions));
    if (options_.fusedHeadLoss) return fusedHeadLoss(normed, decoder.headWeight(), supervisedTargets, options_.headLossChunkRows);
    return at::cross_entropy_loss(decoder.logits(normed).to(at::kFloat), supervisedTargets, {}, at::Reduction::Mean, -100);
  };
  const int64_t layers = decoder.layers();
  at::Tensor visualIndex;
  // Every layer runs with LoRA dropout on; an abort returns within one layer, and the next step starts from clean
  // gradients.
  auto forwardLayers = [&](const at::Tensor& embeds, const LayerHook& around) {
    return model_.runLayers(embeds, context, visualIndex, vision.deepstack, nullptr, around, /*training=*/true);
  };

  if (!options_.gradientCheckpointing) {
    const at::Tensor hidden = forwardLayers(model_.embedWithImages(ids, vision, &visualIndex), [&](int64_t l, const at::Tensor& input, const LayerRun& run) {
      at::AutoGradMode record(layerTrainable_[l] || input.requires_grad());  // frozen leading layers record nothing
      return run(input);
    });
    const at::Tensor loss = headLoss(hidden);
    (loss * scale).backward();
    return loss.item<double>();
  }

  // Gradient checkpointing: a forward without a graph keeps only each layer's input (and the RNG state, so
  // LoRA dropout repeats); the backward recomputes one layer at a time and backpropagates through it.
  at::Generator rng = at::globalContext().defaultGenerator(model_.device());
  const bool replayRng = options_.lora && options_.loraOptions.dropout > 0.0;
  std::vector<at::Tensor> layerInputs, rngStates;
  at::Tensor hidden;
  {
    at::NoGradGuard noGrad;
    hidden = forwardLayers(model_.embedWithImages(ids, vision, &visualIndex), [&](int64_t, const at::Tensor& input, const LayerRun& run) {
      layerInputs.push_back(input);
      if (replayRng) rngStates.push_back(rng.get_state());
      return run(input);
    });
  }
  const at::Tensor endState = replayRng ? rng.get_state() : at::Tensor();
  const at::Tensor last = hidden.detach().requires_grad_(true);
  const at::Tensor loss = headLoss(last);
  (loss * scale).backward();
  at::Tensor grad = last.grad();
  // Below the lowest trainable layer nothing needs a gradient, unless the embeddings or vision side train.
  const bool inputsTrain = options_.trainable.embeddings && !(options_.lora && options_.loraOnly);
  const int64_t lowest = inputsTrain || visionTrainable ? 0 : static_cast<int64_t>(std::find(layerTrainable_.begin(), layerTrainable_.end(), true) - layerTrainable_.begin());
  for (int64_t l = layers - 1; l >= lowest; --l) {
    const at::Tensor input = layerInputs[l].detach().requires_grad_(true);
    if (replayRng) rng.set_state(rngStates[l]);
    const at::Tensor output = model_.runLayer(l, input, context, visualIndex, vision.deepstack, nullptr, /*training=*/true);
    torch::autograd::backward({output}, {grad}, /*keep_graph=*/visionTrainable);
    grad = input.grad();
    layerInputs[l] = at::Tensor();  // free as we go
  }
  if (replayRng) rng.set_state(endState);
  if (lowest == 0 && (inputsTrain || visionTrainable)) {
    at::Tensor unused;
    const at::Tensor embeds = model_.embedWithImages(ids, vision, &unused);
    if (embeds.requires_grad()) torch::autograd::backward({embeds}, {grad});
  }
  return loss.item<double>();
}

TensorMap Trainer::gradients(const ModelInputs& batch, const std::vector<std::string>& names) {
  AsideScope aside(*this);
  for (auto& p : parameters_) p.value.mutable_grad().reset();
  int64_t tokens = 0;
  forwardBackward(batch, 1.0, &tokens);
  TensorMap out;
  for (const auto& name : names) {
    const std::string lookup = name == "lm_head.weight" && model_.weights().headTied ? "model.language_model.embed_tokens.weight" : name;
    auto it = std::find_if(parameters_.begin(), parameters_.end(), [&](const Parameter& p) { return p.name == lookup; });
    if (it == parameters_.end()) throw Error("parameter '" + name + "' is not trainable in this setup");
    out[name] = it->value.grad().defined() ? it->value.grad().clone() : at::zeros_like(it->value);
  }
  for (auto& p : parameters_) p.value.mutable_grad().reset();
  return out;
}

StepReport Trainer::step(const std::vector<ModelInputs>& microBatches) {
  AsideScope aside(*this);
  if (microBatches.empty()) throw Error("a training step needs at least one micro-batch");
  const auto start = std::chrono::steady_clock::now();
  for (auto& p : parameters_) p.value.mutable_grad().reset();
  StepReport report;
  report.microBatches = static_cast<int64_t>(microBatches.size());
  double lossSum = 0.0;
  for (const auto& batch : microBatches) {
    checkCancelled();
    int64_t tokens = 0;
    lossSum += forwardBackward(batch, 1.0 / static_cast<double>(microBatches.size()), &tokens);
    report.tokens += tokens;
    report.inputTokens += batch.attentionMask.defined() ? batch.attentionMask.sum().item<int64_t>() : batch.inputIds.numel();
  }
  at::NoGradGuard noGrad;
  synchronize(model_.device());
  const auto optimizerStart = std::chrono::steady_clock::now();
  std::vector<at::Tensor> norms;
  for (const auto& p : parameters_) {
    if (p.value.grad().defined()) norms.push_back(p.value.grad().to(at::kFloat).norm());
  }
  const double gradNorm = norms.empty() ? 0.0 : at::stack(norms).norm().item<double>();
  if (!std::isfinite(gradNorm)) throw Error("gradient norm is not finite (" + std::to_string(gradNorm) + "); the step was not applied");
  if (options_.maxGradNorm > 0.0) {
    const double coefficient = options_.maxGradNorm / (gradNorm + 1e-6);
    if (coefficient < 1.0) {
      for (auto& p : parameters_) {
        if (p.value.grad().defined()) p.value.mutable_grad().mul_(coefficient);
      }
    }
  }
  const double learningRate = learningRateAt(step_);
  applyAdamW(learningRate);
  ++step_;
  for (auto& p : parameters_) p.value.mutable_grad().reset();
  report.step = step_;
  report.loss = lossSum / static_cast<double>(microBatches.size());
  report.learningRate = learningRate;
  report.gradNorm = gradNorm;
  synchronize(model_.device());
  const auto end = std::chrono::steady_clock::now();
  report.seconds = std::chrono::duration<double>(end - start).count();
  report.optimizerSeconds = std::chrono::duration<double>(end - optimizerStart).count();
  return report;
}

void Trainer::applyAdamW(double lr) {
  // torch.optim.AdamW(fused=True), transformers' default optimizer since torch 2.8: one multi-tensor kernel
  // reads each gradient and moment once and does the math in fp32 (so "pure" bf16 is PIGG's update exactly).
  // bf16 weights under master/kahan/stochastic are updated through an fp32 target (the master copy, or the
  // weights widened), then written back by their mode; their fp32 temporaries are made for at most kBatch
  // elements at a time, so an 8B model's embedding never costs several fp32 copies at once.
  constexpr int64_t kBatch = int64_t{1} << 24;
  const bool widened = options_.updateMode != UpdateMode::Pure;
  const at::Tensor stepCount = at::full({}, static_cast<double>(step_ + 1), at::TensorOptions().dtype(at::kFloat).device(model_.device()));
  struct Slice {
    at::Tensor weights, grad, expAvg, expAvgSq, master, compensation;
    bool throughFp32;
  };
  auto flat = [](const at::Tensor& t) { return t.defined() ? t.view({-1}) : t; };
  auto flush = [&](std::vector<Slice>& slices, double decay) {
    if (slices.empty()) return;
    std::vector<at::Tensor> targets, grads, expAvgs, expAvgSqs, steps;
    for (const auto& slice : slices) {
      at::Tensor target = !slice.throughFp32 ? slice.weights : slice.master.defined() ? slice.master : slice.weights.to(at::kFloat);
      targets.push_back(target);
      grads.push_back(slice.grad.to(target.scalar_type()));
      expAvgs.push_back(slice.expAvg);
      expAvgSqs.push_back(slice.expAvgSq);
      steps.push_back(stepCount);
    }
    at::_fused_adamw_(targets, grads, expAvgs, expAvgSqs, {}, steps, lr, options_.beta1, options_.beta2, decay, options_.epsilon,
                      /*amsgrad=*/false, /*maximize=*/false);
    for (size_t i = 0; i < slices.size(); ++i) {
      const Slice& slice = slices[i];
      if (!slice.throughFp32) continue;
      if (options_.updateMode == UpdateMode::Master) {
        slice.weights.copy_(targets[i]);
      } else if (options_.updateMode == UpdateMode::Stochastic) {
        slice.weights.copy_(stochasticRound(targets[i], generator_));
      } else {
        // Kahan: carry what rounding to the weight dtype dropped into the next update.
        const at::Tensor current = slice.weights.to(at::kFloat);
        const at::Tensor wanted = targets[i] - current + slice.compensation.to(at::kFloat);
        const at::Tensor rounded = (current + wanted).to(slice.weights.scalar_type());
        slice.compensation.copy_(wanted - (rounded.to(at::kFloat) - current));
        slice.weights.copy_(rounded);
      }
    }
    slices.clear();
  };
  for (const bool decayed : {true, false}) {
    const double decay = decayed ? options_.weightDecay : 0.0;
    std::vector<Slice> slices;
    int64_t pending = 0;
    for (auto& p : parameters_) {
      if (p.decay != decayed || !p.value.grad().defined()) continue;
      const bool throughFp32 = widened && p.value.scalar_type() != at::kFloat;
      const at::Tensor weights = flat(p.value), grad = p.value.grad().reshape({-1}), expAvg = flat(p.expAvg), expAvgSq = flat(p.expAvgSq);
      const at::Tensor master = flat(p.master), compensation = flat(p.compensation);
      for (int64_t start = 0; start < weights.numel();) {
        const int64_t length = throughFp32 ? std::min(kBatch - pending, weights.numel() - start) : weights.numel();
        auto part = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, start, length) : t; };
        slices.push_back({part(weights), part(grad), part(expAvg), part(expAvgSq), part(master), part(compensation), throughFp32});
        start += length;
        if (throughFp32) pending += length;
        if (pending >= kBatch) {
          flush(slices, decay);
          pending = 0;
        }
      }
    }
    flush(slices, decay);
  }
}

void Trainer::save(const std::string& dir, bool mergeAdapter) {
  AsideScope aside(*this);
  at::NoGradGuard noGrad;
  const bool baseTrains = std::any_of(parameters_.begin(), parameters_.end(), [](const Parameter& p) { return !isLoraName(p.name); });
  if (options_.lora && !mergeAdapter && !baseTrains) {
    saveLoraAdapter(model_.text(), options_.loraOptions, dir, model_.dir());
    return;
  }
  if (options_.lora && !mergeAdapter) {
    // Trained base weights (loraOnly false) do not fit peft's adapter format: the adapter goes to dir and the
    // trained, unmerged base model to dir/base, which the adapter config names as its base model.
    const std::string base = (std::filesystem::absolute(dir) / "base").lexically_normal().string();
    writeFolderAtomically(dir, [&](const std::string& temp) {
      saveLoraAdapter(model_.text(), options_.loraOptions, temp, base);
      saveCheckpoint(temp + "/base", model_.config(), model_.weights().tensors, model_.weights().headTied, model_.dir(), model_.dtype());
    });
    return;
  }
  std::map<std::string, at::Tensor> tensors = model_.weights().tensors;
  if (options_.lora) {
    for (auto& [name, linear] : loraTargets(model_.text(), options_.loraOptions.targets)) {
      const at::Tensor delta = at::matmul(linear->loraB, linear->loraA) * linear->loraScale;
      tensors[name + ".weight"] = (linear->weight.to(at::kFloat) + delta).to(linear->weight.scalar_type());
    }
  }
  saveCheckpoint(dir, model_.config(), tensors, model_.weights().headTied, model_.dir(), model_.dtype());
}

void Trainer::saveState(const std::string& dir) {
  AsideScope aside(*this);
  at::NoGradGuard noGrad;
  writeFolderAtomically(dir, [&](const std::string& temp) {
    save(temp + (options_.lora ? "/adapter" : "/model"));
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& p : parameters_) {
      tensors.emplace_back("exp_avg." + p.name, p.expAvg);
      tensors.emplace_back("exp_avg_sq." + p.name, p.expAvgSq);
      if (p.master.defined()) tensors.emplace_back("master." + p.name, p.master);
      if (p.compensation.defined()) tensors.emplace_back("compensation." + p.name, p.compensation);
    }
    tensors.emplace_back("rng.trainer", generator_.get_state());
    tensors.emplace_back("rng.device", at::globalContext().defaultGenerator(model_.device()).get_state());
    writeSafetensors(temp + "/optimizer.safetensors", tensors);
    const json state = {{"format", "pigg-trainer-state/1"},
                        {"step", step_},
                        {"learningRate", options_.learningRate},
                        {"schedule", options_.schedule},
                        {"warmupSteps", options_.warmupSteps},
                        {"totalSteps", options_.totalSteps},
                        {"updateMode", updateModeName(options_.updateMode)},
                        {"lora", options_.lora},
                        {"parameters", trainableNames()}};
    writeTextFile(temp + "/trainer_state.json", state.dump(2));
  });
}

void Trainer::loadState(const std::string& dir) {
  AsideScope aside(*this);
  namespace fs = std::filesystem;
  const fs::path statePath = fs::path(dir) / "trainer_state.json";
  const json state = readJsonFile(statePath.string(), "is " + dir + " a saved training state?");
  if (state.value("parameters", std::vector<std::string>{}) != trainableNames()) {
    throw Error(statePath.string() + ": the saved trainable parameters differ from this trainer's setup");
  }
  if (state.value("lora", false) != options_.lora) throw Error(statePath.string() + ": saved with lora=" + (state.value("lora", false) ? "true" : "false"));
  at::NoGradGuard noGrad;
  const TensorSource optimizer = TensorSource::openFile((fs::path(dir) / "optimizer.safetensors").string());
  const TensorSource weights = options_.lora ? TensorSource::openFile((fs::path(dir) / "adapter" / "adapter_model.safetensors").string())
                                             : TensorSource::openDir((fs::path(dir) / "model").string());
  // With LoRA and a trainable base, the base weights sit in adapter/base (see save()).
  const bool baseTrains = std::any_of(parameters_.begin(), parameters_.end(), [](const Parameter& p) { return !isLoraName(p.name); });
  const TensorSource base = options_.lora && baseTrains ? TensorSource::openDir((fs::path(dir) / "adapter" / "base").string()) : weights;
  for (auto& p : parameters_) {
    const bool adapter = options_.lora && isLoraName(p.name);
    const std::string stored = adapter ? "base_model.model." + p.name : p.name;
    const TensorSource& source = adapter || !options_.lora ? weights : base;
    if (!source.has(stored)) throw Error(dir + ": saved state has no weights for '" + p.name + "'");
    p.value.copy_(source.tensor(stored));
    p.expAvg.copy_(optimizer.tensor("exp_avg." + p.name));
    p.expAvgSq.copy_(optimizer.tensor("exp_avg_sq." + p.name));
    if (p.master.defined()) p.master.copy_(optimizer.tensor("master." + p.name));
    if (p.compensation.defined()) p.compensation.copy_(optimizer.tensor("compensation." + p.name));
  }
  generator_.set_state(optimizer.tensor("rng.trainer").clone());
  at::Generator deviceGenerator = at::globalContext().defaultGenerator(model_.device());
  deviceGenerator.set_state(optimizer.tensor("rng.device").clone());
  step_ = state.value("step", int64_t{0});
}

}  // namespace pigg
