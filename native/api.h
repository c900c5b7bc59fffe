// The engine's interface to the outside, free of torch types: the N-API layer includes only this header, so it
// compiles in about a second and knows nothing of libtorch. Tensors cross as host buffers with a dtype and shape.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control.h"
#include "grammar_tables.h"
#include "options.h"

namespace pigg {
class Grammar;  // grammar.h
}

namespace pigg::api {

// Cancellation (and load progress) of one call; the binding makes one per call that takes an AbortSignal.
using pigg::CallControl;
using pigg::Grammar;
using pigg::GrammarTables;
using pigg::SamplingOptions;
// The call options (options.h): their defaults are the engine's only ones.
using pigg::GenerateOptions;
using pigg::LoadOptions;
using pigg::TrainerOptions;

enum class DType { F32, F16, BF16, F64, I64, I32, U8, BOOL };

struct HostTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<void> owner;  // keeps data alive (an engine tensor, or a reference to a JS buffer)
};

using NamedTensors = std::vector<std::pair<std::string, HostTensor>>;

class Model;  // defined in api.cpp

// Every long call takes an optional control: its abort throws pigg::Cancelled within one layer / decode step /
// tensor, and leaves the model usable.
std::shared_ptr<Model> loadModel(const std::string& dir, const LoadOptions& options, CallControl* control = nullptr);
// Parameter counts, dtype, device, memory, config summary and load warnings, as a JSON text.
std::string modelInfo(Model& model);
NamedTensors forward(Model& model, const NamedTensors& inputs, const std::vector<std::string>& outputs, CallControl* control = nullptr);
NamedTensors generate(Model& model, const NamedTensors& inputs, const GenerateOptions& options, CallControl* control = nullptr);
// The decode loop's token picker alone: `draws` picks per row from fixed f32 logits [rows, vocab] ("logits"), each
// from the same logits (no repetition-penalty history), as "tokens" [draws, rows] (for testing the sampler).
NamedTensors sampleTokens(const NamedTensors& inputs, const std::vector<SamplingOptions>& rows, int64_t draws);
// Attaches a PEFT LoRA adapter folder to the model itself (forward and generate then include it; training path).
void loadAdapter(Model& model, const std::string& dir);
// Named adapters beside the base weights, chosen per generate row. Registering reads and checks the folder
// without taking the model's call lock; the summary (and the list) as JSON.
std::string registerAdapter(Model& model, const std::string& name, const std::string& dir);
bool unregisterAdapter(Model& model, const std::string& name);
std::string listAdapters(Model& model);
void setAdapterBudget(Model& model, int64_t deviceBytes);
std::shared_ptr<const Grammar> createGrammar(GrammarTables tables);
class Trainer;  // defined in api.cpp

// The trainer keeps the model alive.
std::shared_ptr<Trainer> createTrainer(const std::shared_ptr<Model>& model, const TrainerOptions& options);
// One optimizer step over the micro-batches; the step report as JSON. An aborted step applies no update.
std::string trainerStep(Trainer& trainer, const std::vector<NamedTensors>& microBatches, CallControl* control = nullptr);
NamedTensors trainerGradients(Trainer& trainer, const NamedTensors& batch, const std::vector<std::string>& names);
void trainerSave(Trainer& trainer, const std::string& dir, bool mergeAdapter, CallControl* control = nullptr);
void trainerSaveState(Trainer& trainer, const std::string& dir, CallControl* control = nullptr);
void trainerLoadState(Trainer& trainer, const std::string& dir);
std::string trainerInfo(Trainer& trainer);

// Writes a checkpoint with random weights for a config.json text (init-random, benchmarks).
void initRandomCheckpoint(const std::string& configJson, const std::string& dir, const std::string& dtype, const std::string& device, uint64_t seed);

// Validates a checkpoint folder (config, headers, names, shapes) without loading data; a JSON summary.
std::string inspectCheckpoint(const std::string& dir);
// Reads every tensor of a .safetensors file into host tensors (fixtures, results).
NamedTensors readTensors(const std::string& path);
void writeTensors(const std::string& path, const NamedTensors& tensors);
// Once, before any other call: installs the host tensor cache (cpu_allocator.h).
void initialize();
std::string versions();
// Allocated / reserved / peak bytes of a CUDA device as JSON ({"available": false} on the CPU).
std::string deviceMemory(const std::string& device);

}  // namespace pigg::api
