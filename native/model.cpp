#include "model.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <limits>
#include <thread>

#include "device.h"
#include "error.h"
#include "picker.h"
#include "rope.h"

namespace pigg {
namespace {

at::Device parseDevice(const std::string& name) {
  if (name != "cpu" && name.rfind("cuda", 0) != 0) throw Error("unknown device '" + name + "' (use cpu, cuda or cuda:N)");
  at::Device device = at::kCPU;
  try {
    device = at::Device(name);
  } catch (const std::exception&) {
    throw Error("unknown device '" + name + "' (use cpu, cuda or cuda:N)");
  }
  if (device.is_cuda()) {
    if (!at::hasCUDA()) throw Error("device '" + name + "' requested, but this libtorch has no CUDA support or no GPU is visible");
  }
  return device;
}

at::ScalarType parseDtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  throw Error("unknown dtype '" + name + "' (use fp32 or bf16)");
}

// Additive mask allowing query i (at absolute position keyLength - queries + i) to see valid keys up to itself.
at::Tensor additiveMask(const at::Tensor& keyValid, int64_t queries, at::ScalarType dtype) {
  const int64_t batch = keyValid.size(0), keys = keyValid.size(1);
  const auto device = keyValid.device();
  const at::Tensor causal = at::ones({queries, keys}, at::TensorOptions().dtype(at::kBool).device(device)).tril(keys - queries);
  const at::Tensor allowed = causal.view({1, 1, queries, keys}) & keyValid.view({batch, 1, 1, keys});
  return at::zeros({batch, 1, queries, keys}, at::TensorOptions().dtype(dtype).device(device)).masked_fill(allowed.logical_not(), maskedScore(dtype));
}

}  // namespace

const std::set<std::string>& forwardOutputNames() {
  static const std::set<std::string> names = {
      "position_ids", "rope_deltas", "rope_deltas_unpadded", "vision_patch_embed", "vision_pos_embed", "vision_rotary_cos",
      "vision_rotary_sin", "vision_blocks_out", "image_embeds", "deepstack_embeds", "inputs_embeds", "text_rotary_cos",
      "text_rotary_sin", "decoder_layer_outputs", "last_hidden_state", "logits", "loss"};
  return names;
}

std::unique_ptr<Qwen3VL> Qwen3VL::load(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<Qwen3VL> model(new Qwen3VL());
  model->dir_ = dir;
  model->device_ = parseDevice(options.device);
  model->dtype_ = parseDtype(options.dtype);
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  if (model->device_.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(options.allowTf32);
    at::globalContext().setAllowTF32CuDNN(options.allowTf32);
  }
  model->config_ = ModelConfig::fromDir(dir);
  model->weights_ = loadWeights(dir, model->config_, model->device_, model->dtype_);
  model->invFreq_ = textInvFreq(model->config_.text).to(model->device_);
  model->vision_ = std::make_unique<VisionTower>(model->config_.vision, model->weights_);
  model->text_ = std::make_unique<TextDecoder>(model->config_, model->weights_);
  model->adapters_ = std::make_unique<AdapterRegistry>(model->device_);
  return model;
}

void Qwen3VL::validate(const ModelInputs& inputs) const {
  const at::Tensor& ids = inputs.inputIds;
  if (!ids.defined() || ids.dim() != 2 || ids.size(1) == 0) throw Error("input_ids must have shape [batch, length] with length > 0");
  auto sameShape = [&](const at::Tensor& t, const char* name) {
    if (t.defined() && t.sizes() != ids.sizes()) throw Error(std::string(name) + " must have the shape of input_ids");
  };
  sameShape(inputs.attentionMask, "attention_mask");
  sameShape(inputs.labels, "labels");
  const int64_t vocab = config_.text.vocabSize;
  if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= vocab) {
    throw Error("input_ids contain a token id outside the vocabulary [0, " + std::to_string(vocab) + ")");
  }
  const int64_t imageTokens = (ids == config_.imageTokenId).sum().item<int64_t>();
  if (!inputs.pixelValues.defined()) {
    if (imageTokens > 0) throw Error("input_ids contain " + std::to_string(imageTokens) + " image tokens but no pixel_values were given");
    return;
  }
  vision_->validate(inputs.pixelValues, inputs.imageGridThw);
  const int64_t merge = config_.vision.spatialMergeSize;
  const int64_t features = inputs.pixelValues.size(0) / (merge * merge);
  if (imageTokens != features) {
    throw Error("input_ids contain " + std::to_string(imageTokens) + " image tokens but the images (image_grid_thw) give " + std::to_string(features) +
                " image features");
  }
}

at::Tensor Qwen3VL::embedWithImages(const at::Tensor& inputIds, const VisionOutputs& vision, at::Tensor* visualIndex) const {
  at::Tensor embeds = text_->embed(inputIds);
  if (!vision.imageEmbeds.defined()) return embeds;
  const at::Tensor index = (inputIds.reshape({-1}) == config_.imageTokenId).nonzero().squeeze(1).to(device_);
  *visualIndex = index;
  const int64_t hidden = embeds.size(-1);
  // Rows in batch-major order, like masked_scatter; the replaced rows get no gradient into the embedding.
  return embeds.reshape({-1, hidden}).index_copy(0, index, vision.imageEmbeds.to(embeds.scalar_type())).view(embeds.sizes());
}

at::Tensor addAtPositions(const at::Tensor& hidden, const at::Tensor& visualIndex, const at::Tensor& feature) {
  const int64_t width = hidden.size(-1);
  return hidden.reshape({-1, width}).index_add(0, visualIndex, feature.to(hidden.scalar_type())).view(hidden.sizes());
}

at::Tensor Qwen3VL::runLayer(int64_t l, const at::Tensor& hidden, const AttentionContext& context, const at::Tensor& visualIndex,
                             const std::vector<at::Tensor>& deepstack, KVCache* cache, bool training) {
  checkCancelled();  // an abort returns within one layer
  const at::Tensor output = text_->layer(l, hidden, context, cache, training);
  return l < static_cast<int64_t>(deepstack.size()) ? addAtPositions(output, visualIndex, deepstack[l]) : output;
}

at::Tensor Qwen3VL::runLayers(at::Tensor hidden, const AttentionContext& context, const at::Tensor& visualIndex,
                              const std::vector<at::Tensor>& deepstack, KVCache* cache, const LayerHook& around, bool training) {
  for (int64_t l = 0; l < text_->layers(); ++l) {
    const LayerRun run = [&, l](const at::Tensor& input) { return runLayer(l, input, context, visualIndex, deepstack, cache, training); };
    hidden = around ? around(l, hidden, run) : run(hidden);
  }
  return hidden;
}

AttentionContext Qwen3VL::attentionContext(const at::Tensor& positionIds, const at::Tensor& attentionMask) const {
  AttentionContext context;
  auto [cos, sin] = textRotary(positionIds, invFreq_, config_.text.mropeSection);
  context.cos = cos.to(dtype_);
  context.sin = sin.to(dtype_);
  if (attentionMask.defined() && (attentionMask == 0).any().item<bool>()) {
    context.mask = additiveMask(attentionMask.to(device_).to(at::kBool), positionIds.size(2), dtype_);
  }
  return context;
}

at::Tensor causalLmLoss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t batch = labels.size(0), length = labels.size(1);
  const at::Tensor target = at::cat({labels.narrow(1, 1, length - 1), at::full({batch, 1}, -100, labels.options())}, 1).to(logits.device());
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, logits.size(-1)}), target.reshape({-1}), {}, at::Reduction::Mean, -100);
}

TensorMap Qwen3VL::forward(const ModelInputs& inputs, const std::set<std::string>& outputs) {
  for (const auto& name : outputs) {
    if (!forwardOutputNames().count(name)) throw Error("unknown forward output '" + name + "'");
  }
  if (outputs.count("loss") && !inputs.labels.defined()) throw Error("output 'loss' needs labels");
  validate(inputs);
  at::NoGradGuard noGrad;
  auto want = [&](const char* name) { return outputs.count(name) > 0; };
  TensorMap out;
  const bool keepVision = want("vision_patch_embed") || want("vision_pos_embed") || want("vision_rotary_cos") || want("vision_rotary_sin") ||
                          want("vision_blocks_out");
  VisionOutputs vision;
  if (inputs.pixelValues.defined()) vision = vision_->forward(inputs.pixelValues, inputs.imageGridThw, keepVision);
  if (keepVision && vision.imageEmbeds.defined()) {
    out["vision_patch_embed"] = vision.patchEmbed;
    out["vision_pos_embed"] = vision.posEmbed;
    out["vision_rotary_cos"] = vision.rotaryCos;
    out["vision_rotary_sin"] = vision.rotarySin;
    out["vision_blocks_out"] = vision.blocksOut;
  }
  if (vision.imageEmbeds.defined()) {
    out["image_embeds"] = vision.imageEmbeds;
    for (size_t j = 0; j < vision.deepstack.size(); ++j) out["deepstack_embeds." + std::to_string(j)] = vision.deepstack[j];
  }
  const at::Tensor ids = inputs.inputIds.to(at::kCPU);
  const RopeIndex rope = ropeIndex(ids, inputs.attentionMask.defined() ? inputs.attentionMask.to(at::kCPU) : at::Tensor(),
                                   inputs.imageGridThw.defined() ? inputs.imageGridThw.to(at::kCPU) : at::Tensor(), config_);
  out["position_ids"] = rope.positionIds;
  out["rope_deltas"] = rope.ropeDeltasPadded;
  out["rope_deltas_unpadded"] = rope.ropeDeltas;

  at::Tensor visualIndex;
  at::Tensor hidden = embedWithImages(ids, vision, &visualIndex);
  out["inputs_embeds"] = hidden;
  const AttentionContext context = attentionContext(rope.positionIds, inputs.attentionMask);
  if (want("text_rotary_cos") || want("text_rotary_sin")) {
    auto [cos, sin] = textRotary(rope.positionIds, invFreq_, config_.text.mropeSection);
    out["text_rotary_cos"] = cos;
    out["text_rotary_sin"] = sin;
  }
  std::vector<at::Tensor> layerOutputs;
  const LayerHook keepOutputs = [&](int64_t, const at::Tensor& input, const LayerRun& run) { return layerOutputs.emplace_back(run(input)); };
  hidden = runLayers(hidden, context, visualIndex, vision.deepstack, nullptr, want("decoder_layer_outputs") ? keepOutputs : nullptr);
  if (!layerOutputs.empty()) out["decoder_layer_outputs"] = at::stack(layerOutputs);
  const at::Tensor normed = text_->norm(hidden);
  out["last_hidden_state"] = normed;
  if (want("logits") || want("loss")) {
    const at::Tensor logits = text_->logits(normed);
    out["logits"] = logits;
    if (inputs.labels.defined()) out["loss"] = causalLmLoss(logits, inputs.labels).reshape({1});
  }
  // Only what was asked for leaves (deepstack_embeds stands for all of its parts).
  TensorMap selected;
  for (auto& [name, tensor] : out) {
    const std::string base = name.rfind("deepstack_embeds.", 0) == 0 ? "deepstack_embeds" : name;
    if (outputs.count(base) || outputs.count(name)) selected[name] = tensor;
  }
  return selected;
}

namespace {

// Seconds since `start`, after the device has finished the work queued so far.
double secondsSince(std::chrono::steady_clock::time_point start, at::Device device) {
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
void checkPerRow(const std::vector<T>& list, int64_t batch, const char* what) {
  if (!list.empty() && static_cast<int64_t>(list.size()) != batch) {
    throw Error(std::string(what) + " must have one entry per row (" + std::to_string(batch) + "), got " + std::to_string(list.size()));
  }
}

// The grammar states of constrained rows: the masks of the next token, and the states after the chosen ones.
class RowConstraints {
 public:
  RowConstraints(const std::vector<std::shared_ptr<const Grammar>>& grammars, int64_t vocab, at::Device device) : grammars_(grammars), device_(device) {
    for (const auto& grammar : grammars_) {
      if (!grammar) {
        states_.push_back(-1);
        continue;
      }
      if (grammar->vocabSize() != vocab) {
        throw Error("the grammar was built for a vocabulary of " + std::to_string(grammar->vocabSize()) + " tokens, the model has " + std::to_string(vocab));
      }
      states_.push_back(grammar->start());
      any_ = true;
    }
    if (any_) free_ = at::ones({vocab}, at::TensorOptions().dtype(at::kBool).device(device));
  }

  bool any() const { return any_; }

  // Disallowed tokens of constrained rows get -inf, so the argmax picks the best allowed one.
  at::Tensor apply(const at::Tensor& logits) const {
    std::vector<at::Tensor> masks;
    for (size_t r = 0; r < grammars_.size(); ++r) masks.push_back(grammars_[r] ? grammars_[r]->mask(states_[r], device_) : free_);
    return logits.masked_fill(at::stack(masks).logical_not(), -std::numeric_limits<float>::infinity());
  }

  void advance(const at::Tensor& next) {
    const at::Tensor cpu = next.to(at::kCPU);
    const int64_t* tokens = cpu.data_ptr<int64_t>();
    for (size_t r = 0; r < grammars_.size(); ++r) {
      if (!grammars_[r] || states_[r] < 0) continue;
      states_[r] = grammars_[r]->advance(states_[r], tokens[r]);  // -1 only for a finished row (padding)
    }
  }

 private:
  std::vector<std::shared_ptr<const Grammar>> grammars_;
  std::vector<int32_t> states_;
  at::Device device_;
  at::Tensor free_;
  bool any_ = false;
};

}  // namespace

TensorMap Qwen3VL::generate(const ModelInputs& prompts, const GenerateOptions& options) {
  validate(prompts);
  if (options.maxNewTokens < 1) throw Error("maxNewTokens must be at least 1");
  at::NoGradGuard noGrad;
  const at::Tensor ids = prompts.inputIds.to(at::kCPU);
  const int64_t batch = ids.size(0), promptLength = ids.size(1);
  checkPerRow(options.rowAdapters, batch, "adapters");
  checkPerRow(options.rowGrammars, batch, "grammars");
  checkPerRow(options.rowControls, batch, "row controls");
  const at::Tensor mask = prompts.attentionMask.defined() ? prompts.attentionMask.to(at::kCPU).to(at::kLong) : at::ones_like(ids);
  if ((mask.select(1, promptLength - 1) == 0).any().item<bool>()) {
    throw Error("generation prompts must be left padded: a row of attention_mask ends with padding");
  }
  const std::vector<RowLora> rowLora = options.rowAdapters.empty() ? std::vector<RowLora>() : adapters_->gather(options.rowAdapters);
  RowConstraints constraints(options.rowGrammars, config_.text.vocabSize, device_);
  TokenPicker picker(options.rowSampling, batch, config_.text.vocabSize, device_, ids, mask);
  const bool stopOnEos = !options.eosTokenIds.empty();
  if (constraints.any() && !stopOnEos) throw Error("constrained decoding needs EOS ids (the grammar ends with one)");

  auto clock = std::chrono::steady_clock::now();
  VisionOutputs vision;
  if (prompts.pixelValues.defined()) vision = vision_->forward(prompts.pixelValues, prompts.imageGridThw, false);
  const double visionSeconds = secondsSince(clock, device_);
  clock = std::chrono::steady_clock::now();
  const RopeIndex rope = ropeIndex(ids, mask, prompts.imageGridThw.defined() ? prompts.imageGridThw.to(at::kCPU) : at::Tensor(), config_);

  at::Tensor visualIndex;
  at::Tensor hidden = embedWithImages(ids, vision, &visualIndex);
  AttentionContext context = attentionContext(rope.positionIds, mask);
  context.rowLora = rowLora.empty() ? nullptr : &rowLora;
  // Every new token but the last is fed back: prompt + maxNewTokens - 1 columns.
  KVCache cache = text_->newCache(batch, promptLength + options.maxNewTokens - 1);
  hidden = runLayers(hidden, context, visualIndex, vision.deepstack, &cache);
  cache.startDecoding(mask.to(device_).to(at::kBool));
  at::Tensor lastLogits = text_->logits(text_->norm(hidden.select(1, promptLength - 1))).to(at::kFloat);
  const double prefillSeconds = secondsSince(clock, device_);
  clock = std::chrono::steady_clock::now();

  const at::Tensor eos = at::tensor(stopOnEos ? options.eosTokenIds : std::vector<int64_t>{-1}, at::kLong).to(device_);
  at::Tensor finished = at::zeros({batch}, at::TensorOptions().dtype(at::kBool).device(device_));
  std::vector<uint8_t> aborted(batch, 0);
  // Decode step s feeds its token at position max prompt position + 1 + s (all three M-RoPE axes alike): the
  // positions and rotary tables of every step at once, each step taking its column.
  const int64_t maxFed = options.maxNewTokens - 1;
  const at::Tensor fedPositions = (rope.maxPosition.view({1, batch, 1}) + 1 + at::arange(maxFed, at::kLong).view({1, 1, maxFed})).expand({3, batch, maxFed});
  auto [stepCos, stepSin] = textRotary(fedPositions, invFreq_, config_.text.mropeSection);
  stepCos = stepCos.to(dtype_);
  stepSin = stepSin.to(dtype_);
  AttentionContext stepContext;
  stepContext.rowLora = context.rowLora;
  // Finished rows are padded with the pad id (transformers falls back to the first EOS id when none is set).
  const int64_t padId = config_.padTokenId >= 0 ? config_.padTokenId : (options.eosTokenIds.empty() ? 0 : options.eosTokenIds.front());
  std::vector<at::Tensor> tokens, stepLogits;
  int64_t fed = 0;
  for (int64_t step = 0; step < options.maxNewTokens; ++step) {
    checkCancelled();
    // A row whose request was aborted stops here: it is finished and padded from this step on.
    bool newlyAborted = false;
    for (size_t r = 0; r < options.rowControls.size(); ++r) {
      if (!aborted[r] && options.rowControls[r] && options.rowControls[r]->cancelled) aborted[r] = 1, newlyAborted = true;
    }
    if (newlyAborted) finished = finished | at::tensor(aborted, at::kByte).to(at::kBool).to(device_);
    if (options.returnStepLogits) stepLogits.push_back(lastLogits);
    if (constraints.any()) lastLogits = constraints.apply(lastLogits);
    at::Tensor next = picker.pick(lastLogits);
    next = at::where(finished, at::full_like(next, padId), next);
    finished = finished | at::isin(next, eos);
    picker.append(next);
    if (constraints.any()) constraints.advance(next);
    tokens.push_back(next);
    if (options.onStep) {
      const at::Tensor cpu = next.to(at::kCPU);
      options.onStep(std::vector<int64_t>(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + batch));
    }
    if (step == maxFed || finished.all().item<bool>()) break;
    // Every row, finished ones included (they are fed the pad id), sees the new column.
    cache.nextStep();
    stepContext.cos = stepCos.narrow(1, step, 1);
    stepContext.sin = stepSin.narrow(1, step, 1);
    // Decode steps have no visual positions: no DeepStack.
    const at::Tensor stepHidden = runLayers(text_->embed(next.view({batch, 1})), stepContext, at::Tensor(), {}, &cache);
    fed = step + 1;
    lastLogits = text_->logits(text_->norm(stepHidden.select(1, 0))).to(at::kFloat);
  }
  const double decodeSeconds = secondsSince(clock, device_);
  TensorMap out;
  out["generate.tokens"] = at::stack(tokens, 1).to(at::kCPU);
  if (options.returnStepLogits) out["generate.step_logits"] = at::stack(stepLogits, 1);
  out["generate.fed_position_ids"] = fedPositions.narrow(2, 0, fed).contiguous();
  out["generate.rope_deltas"] = rope.ropeDeltasPadded;
  out["generate.rope_deltas_unpadded"] = rope.ropeDeltas;
  out["generate.aborted"] = at::tensor(aborted, at::kByte).to(at::kBool);
  out["generate.timing"] = at::tensor(std::vector<double>{visionSeconds, prefillSeconds, decodeSeconds}, at::kDouble);
  return out;
}

}  // namespace pigg
