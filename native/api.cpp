#include "api.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "adapters.h"
#include "checkpoint.h"
#include "cpu_allocator.h"
#include "device.h"
#include "error.h"
#include "grammar.h"
#include "lora.h"
#include "model.h"
#include "picker.h"
#include "safetensors.h"
#include "trainer.h"

namespace pigg::api {
namespace {

using json = nlohmann::json;

at::ScalarType toScalarType(DType dtype) {
  switch (dtype) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  throw Error("unknown dtype");
}

DType fromScalarType(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kDouble: return DType::F64;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    default: throw Error(std::string("no host dtype for ") + c10::toString(type));
  }
}

at::Tensor toTensor(const std::string& name, const HostTensor& host) {
  const at::ScalarType type = toScalarType(host.dtype);
  int64_t count = 1;
  for (int64_t d : host.shape) {
    if (d < 0) throw Error("tensor '" + name + "' has a negative dimension");
    count *= d;
  }
  if (static_cast<size_t>(count) * c10::elementSize(type) != host.bytes) {
    throw Error("tensor '" + name + "': " + std::to_string(host.bytes) + " bytes of data do not fit its shape and dtype");
  }
  return at::from_blob(host.data, host.shape, at::TensorOptions().dtype(type));
}

// A host view of a contiguous CPU tensor that keeps the tensor alive.
HostTensor hostView(const at::Tensor& cpu) {
  HostTensor host;
  host.dtype = fromScalarType(cpu.scalar_type());
  host.shape = cpu.sizes().vec();
  host.data = cpu.data_ptr();
  host.bytes = cpu.numel() * cpu.element_size();
  host.owner = std::make_shared<at::Tensor>(cpu);
  return host;
}

HostTensor toHost(const at::Tensor& tensor) {
  // Floating outputs leave as fp32 whatever the compute dtype, so results compare across precisions.
  at::Tensor cpu = tensor.detach().to(at::kCPU);
  if (at::isFloatingType(cpu.scalar_type())) cpu = cpu.to(at::kFloat);
  return hostView(cpu.contiguous());
}

NamedTensors toHostMap(const TensorMap& tensors) {
  NamedTensors out;
  for (const auto& [name, tensor] : tensors) out.emplace_back(name, toHost(tensor));
  return out;
}

// Maps named inputs onto the model's input struct, casting integer inputs to int64.
ModelInputs toModelInputs(const NamedTensors& inputs) {
  static const std::set<std::string> known = {"input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw"};
  ModelInputs model;
  for (const auto& [name, host] : inputs) {
    if (!known.count(name)) throw Error("unknown input '" + name + "' (expected input_ids, attention_mask, labels, pixel_values, image_grid_thw)");
    at::Tensor tensor = toTensor(name, host);
    if (name == "pixel_values") {
      if (!at::isFloatingType(tensor.scalar_type())) throw Error("pixel_values must be a floating-point tensor");
      model.pixelValues = tensor;
      continue;
    }
    if (at::isFloatingType(tensor.scalar_type())) throw Error(name + " must be an integer tensor");
    tensor = tensor.to(at::kLong);
    if (name == "input_ids") model.inputIds = tensor;
    if (name == "attention_mask") model.attentionMask = tensor;
    if (name == "labels") model.labels = tensor;
    if (name == "image_grid_thw") model.imageGridThw = tensor;
  }
  if (!model.inputIds.defined()) throw Error("input 'input_ids' is required");
  return model;
}

int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

json parameterCounts(const ModelConfig& config, bool headTied) {
  ModelConfig withHead = config;
  withHead.tieWordEmbeddings = headTied;
  int64_t vision = 0, text = 0;
  for (const auto& spec : expectedWeights(withHead)) (spec.name.rfind("model.visual.", 0) == 0 ? vision : text) += count(spec.shape);
  return {{"vision", vision}, {"text", text}, {"total", vision + text}};
}

json configSummary(const ModelConfig& config) {
  const auto& t = config.text;
  const auto& v = config.vision;
  return {{"text", {{"layers", t.layers}, {"hidden", t.hidden}, {"intermediate", t.intermediate}, {"heads", t.heads}, {"kvHeads", t.kvHeads},
                    {"headDim", t.headDim}, {"vocab", t.vocabSize}, {"ropeTheta", t.ropeTheta}, {"mropeSection", t.mropeSection}}},
          {"vision", {{"depth", v.depth}, {"hidden", v.hidden}, {"intermediate", v.intermediate}, {"heads", v.heads}, {"patchSize", v.patchSize},
                      {"temporalPatchSize", v.temporalPatchSize}, {"mergeSize", v.spatialMergeSize}, {"deepstackIndexes", v.deepstackIndexes}}},
          {"imageTokenId", config.imageTokenId}, {"videoTokenId", config.videoTokenId}, {"visionStartTokenId", config.visionStartTokenId},
          {"visionEndTokenId", config.visionEndTokenId}, {"tieWordEmbeddings", config.tieWordEmbeddings}, {"eosTokenIds", config.eosTokenIds},
          {"padTokenId", config.padTokenId}};
}

json memoryJson(const DeviceMemory& memory) {
  json out = {{"available", memory.available}};
  if (memory.available) out.update({{"allocated", memory.allocated}, {"reserved", memory.reserved}, {"peakAllocated", memory.peakAllocated}});
  const CpuCacheStats host = cpuCacheStats();
  if (host.installed)
    out["hostCache"] = {{"live", host.liveBytes}, {"cached", host.cachedBytes}, {"limit", host.limitBytes}, {"hits", host.hits}, {"misses", host.misses}};
  return out;
}

// libtorch's own errors carry a C++ backtrace; callers get the message alone.
template <typename Fn>
auto guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& error) {
    throw Error(error.what_without_backtrace());
  }
}

}  // namespace

class Model {
 public:
  ~Model() {
    if (!engine) return;
    const at::Device device = engine->device();
    engine.reset();
    releaseCachedMemory(device);  // memory returns to its baseline between runs (folds)
  }
  std::unique_ptr<Qwen3VL> engine;
  std::mutex mutex;  // one call at a time per model: calls come from worker threads
};

class Trainer {
 public:
  std::shared_ptr<Model> model;
  std::unique_ptr<pigg::Trainer> engine;
};

namespace {

json reportJson(const StepReport& r) {
  return {{"step", r.step}, {"loss", r.loss}, {"learningRate", r.learningRate}, {"gradNorm", r.gradNorm}, {"tokens", r.tokens},
          {"inputTokens", r.inputTokens}, {"microBatches", r.microBatches}, {"seconds", r.seconds},
          {"optimizerSeconds", r.optimizerSeconds}};
}

}  // namespace

std::shared_ptr<Trainer> createTrainer(const std::shared_ptr<Model>& model, const TrainerOptions& options) {
  std::lock_guard<std::mutex> lock(model->mutex);
  auto trainer = std::make_shared<Trainer>();
  trainer->model = model;
  trainer->engine = guarded([&] { return std::make_unique<pigg::Trainer>(*model->engine, options); });
  return trainer;
}

std::string trainerStep(Trainer& trainer, const std::vector<NamedTensors>& microBatches, CallControl* control) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  ControlScope scope(control);
  std::vector<ModelInputs> batches;
  for (const auto& batch : microBatches) batches.push_back(toModelInputs(batch));
  return guarded([&] { return reportJson(trainer.engine->step(batches)).dump(); });
}

NamedTensors trainerGradients(Trainer& trainer, const NamedTensors& batch, const std::vector<std::string>& names) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  return guarded([&] { return toHostMap(trainer.engine->gradients(toModelInputs(batch), names)); });
}

void trainerSave(Trainer& trainer, const std::string& dir, bool mergeAdapter, CallControl* control) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  ControlScope scope(control);
  guarded([&] { trainer.engine->save(dir, mergeAdapter); return 0; });
}

void trainerSaveState(Trainer& trainer, const std::string& dir, CallControl* control) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  ControlScope scope(control);
  guarded([&] { trainer.engine->saveState(dir); return 0; });
}

void trainerLoadState(Trainer& trainer, const std::string& dir) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  guarded([&] { trainer.engine->loadState(dir); return 0; });
}

std::string trainerInfo(Trainer& trainer) {
  std::lock_guard<std::mutex> lock(trainer.model->mutex);
  const pigg::Trainer& t = *trainer.engine;
  json info = {{"step", t.stepsDone()}, {"trainableParameters", t.trainableParameters()}, {"parameters", t.trainableNames()},
               {"learningRate", t.learningRateAt(t.stepsDone())}};
  return info.dump();
}

void initRandomCheckpoint(const std::string& configJson, const std::string& dir, const std::string& dtype, const std::string& device, uint64_t seed) {
  guarded([&] {
    json parsed;
    try {
      parsed = json::parse(configJson);
    } catch (const json::exception& error) {
      throw Error(std::string("config is not valid JSON: ") + error.what());
    }
    const ModelConfig config = ModelConfig::fromJson(parsed, dir + "/config.json");
    const at::ScalarType type = dtype == "bf16" ? at::kBFloat16 : at::kFloat;
    const auto weights = randomWeights(config, type, at::Device(device), seed);
    saveCheckpoint(dir, config, weights, config.tieWordEmbeddings, "", type);
    return 0;
  });
}

std::shared_ptr<Model> loadModel(const std::string& dir, const LoadOptions& options, CallControl* control) {
  ControlScope scope(control);
  auto model = std::make_shared<Model>();
  model->engine = guarded([&] { return Qwen3VL::load(dir, options); });
  return model;
}

std::string modelInfo(Model& model) {
  std::lock_guard<std::mutex> lock(model.mutex);
  const Qwen3VL& engine = *model.engine;
  int64_t bytes = 0;
  std::set<const void*> seen;  // a tied head shares the embedding's storage
  for (const auto& [name, tensor] : engine.weights().tensors) {
    if (seen.insert(tensor.data_ptr()).second) bytes += tensor.numel() * tensor.element_size();
  }
  json info = {{"path", engine.dir()},
               {"architecture", "Qwen3VLForConditionalGeneration"},
               {"device", engine.device().str()},
               {"dtype", engine.dtype() == at::kBFloat16 ? "bf16" : "fp32"},
               {"parameters", parameterCounts(engine.config(), engine.weights().headTied)},
               {"parameterBytes", bytes},
               {"tiedHead", engine.weights().headTied},
               {"files", engine.weights().files},
               {"warnings", engine.weights().warnings},
               {"config", configSummary(engine.config())},
               {"threads", at::get_num_threads()},
               {"deviceMemory", memoryJson(pigg::deviceMemory(engine.device()))}};
  return info.dump();
}

NamedTensors forward(Model& model, const NamedTensors& inputs, const std::vector<std::string>& outputs, CallControl* control) {
  std::lock_guard<std::mutex> lock(model.mutex);
  ControlScope scope(control);
  return guarded([&] { return toHostMap(model.engine->forward(toModelInputs(inputs), std::set<std::string>(outputs.begin(), outputs.end()))); });
}

NamedTensors generate(Model& model, const NamedTensors& inputs, const GenerateOptions& options, CallControl* control) {
  std::lock_guard<std::mutex> lock(model.mutex);
  ControlScope scope(control);
  GenerateOptions engineOptions = options;
  if (options.eosTokenIds.empty() && options.useConfigEos) engineOptions.eosTokenIds = model.engine->config().eosTokenIds;
  return guarded([&] { return toHostMap(model.engine->generate(toModelInputs(inputs), engineOptions)); });
}

NamedTensors sampleTokens(const NamedTensors& inputs, const std::vector<SamplingOptions>& rows, int64_t draws) {
  return guarded([&] {
    if (inputs.size() != 1 || inputs.front().first != "logits") throw Error("sampleTokens takes one tensor named 'logits'");
    const at::Tensor logits = toTensor("logits", inputs.front().second);
    if (logits.dim() != 2 || logits.scalar_type() != at::kFloat) throw Error("logits must be a 2-d f32 tensor [rows, vocab]");
    if (draws < 1) throw Error("draws must be at least 1");
    TokenPicker picker(rows, logits.size(0), logits.size(1), at::kCPU);
    std::vector<at::Tensor> tokens;
    for (int64_t d = 0; d < draws; ++d) tokens.push_back(picker.pick(logits));
    return toHostMap({{"tokens", at::stack(tokens)}});
  });
}

void loadAdapter(Model& model, const std::string& dir) {
  std::lock_guard<std::mutex> lock(model.mutex);
  guarded([&] { loadLoraAdapter(model.engine->text(), dir); return 0; });
}

namespace {

json adapterJson(const AdapterSummary& a) {
  return {{"name", a.name}, {"path", a.path}, {"rank", a.rank}, {"alpha", a.alpha}, {"bytes", a.bytes}, {"onDevice", a.onDevice}, {"lastUsed", a.lastUsedMs}};
}

}  // namespace

std::string registerAdapter(Model& model, const std::string& name, const std::string& dir) {
  // No model lock: the decoder's layer shapes do not change while it lives, and the registry locks itself.
  return guarded([&] {
    AdapterRegistry& registry = model.engine->adapters();
    registry.add(readAdapter(model.engine->text(), name, dir));
    for (const auto& summary : registry.list()) {
      if (summary.name == name) return adapterJson(summary).dump();
    }
    throw Error("adapter '" + name + "' was removed while it was being added");
  });
}

bool unregisterAdapter(Model& model, const std::string& name) { return model.engine->adapters().remove(name); }

std::string listAdapters(Model& model) {
  json list = json::array();
  for (const auto& summary : model.engine->adapters().list()) list.push_back(adapterJson(summary));
  return list.dump();
}

void setAdapterBudget(Model& model, int64_t deviceBytes) { model.engine->adapters().setDeviceBudget(deviceBytes); }

std::shared_ptr<const Grammar> createGrammar(GrammarTables tables) {
  return guarded([&] { return std::make_shared<const Grammar>(std::move(tables)); });
}

std::string inspectCheckpoint(const std::string& dir) {
  return guarded([&] {
    const ModelConfig config = ModelConfig::fromDir(dir);
    const CheckpointSummary summary = validateCheckpoint(dir, config);
    json info = {{"path", dir},
                 {"architecture", config.raw.value("architectures", json::array({"Qwen3VLForConditionalGeneration"}))},
                 {"modelType", "qwen3_vl"},
                 {"files", summary.files},
                 {"tensors", summary.tensorCount},
                 {"dtypes", summary.dtypeCounts},
                 {"tiedHead", summary.headTied},
                 {"parameters", parameterCounts(config, summary.headTied)},
                 {"config", configSummary(config)},
                 {"warnings", summary.warnings}};
    return info.dump();
  });
}

NamedTensors readTensors(const std::string& path) {
  return guarded([&] {
    const TensorSource source = TensorSource::openFile(path);
    NamedTensors out;
    for (const auto& name : source.names()) out.emplace_back(name, hostView(source.tensor(name)));
    return out;
  });
}

void writeTensors(const std::string& path, const NamedTensors& tensors) {
  std::vector<std::pair<std::string, at::Tensor>> list;
  for (const auto& [name, host] : tensors) list.emplace_back(name, toTensor(name, host));
  writeSafetensors(path, list);
}

std::string deviceMemory(const std::string& device) {
  return guarded([&] { return memoryJson(pigg::deviceMemory(at::Device(device))).dump(); });
}

void initialize() { installCpuCachingAllocator(); }

std::string versions() {
  json out = {{"torch", TORCH_VERSION}, {"cuda", at::hasCUDA()}};
  return out.dump();
}

}  // namespace pigg::api
