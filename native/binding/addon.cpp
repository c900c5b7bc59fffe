// The N-API surface: translates JS values to the engine's host types and back, and runs every engine call on
// a worker thread behind a Promise. It includes no torch header (see api.h).
// One file for the ~30 exported calls (over 450 lines) on purpose: each call is a few lines of the same pattern
// (read arguments, schedule, convert the result), and one table of exports at the end shows the whole surface;
// the option structs' reading lives in js_options.h.
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api.h"
#include "js_options.h"

namespace {

using pigg::api::DType;
using pigg::api::HostTensor;
using pigg::api::NamedTensors;
using pigg::binding::isNone;
using pigg::binding::OptionsReader;
using pigg::binding::readOptions;

struct DTypeName {
  DType dtype;
  const char* name;
  napi_typedarray_type arrayType;
};

const DTypeName kDTypes[] = {
    {DType::F32, "F32", napi_float32_array}, {DType::F16, "F16", napi_uint16_array},     {DType::BF16, "BF16", napi_uint16_array},
    {DType::F64, "F64", napi_float64_array}, {DType::I64, "I64", napi_bigint64_array},   {DType::I32, "I32", napi_int32_array},
    {DType::U8, "U8", napi_uint8_array},     {DType::BOOL, "BOOL", napi_uint8_array},
};

const DTypeName& byDType(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  return kDTypes[0];
}

const DTypeName& byName(Napi::Env env, const std::string& name) {
  for (const auto& entry : kDTypes) {
    if (name == entry.name) return entry;
  }
  throw Napi::TypeError::New(env, "unknown tensor dtype '" + name + "'");
}

// A JS tensor {dtype, shape, data: TypedArray} viewed in place; the reference keeps its buffer alive until the
// worker is done with it.
struct BorrowedInputs {
  NamedTensors tensors;
  std::vector<std::shared_ptr<Napi::ObjectReference>> references;
};

BorrowedInputs borrowTensors(Napi::Env env, const Napi::Value& value) {
  if (!value.IsObject()) throw Napi::TypeError::New(env, "inputs must be an object of named tensors");
  Napi::Object object = value.As<Napi::Object>();
  BorrowedInputs out;
  Napi::Array names = object.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value entry = object.Get(name);
    if (entry.IsUndefined() || entry.IsNull()) continue;
    if (!entry.IsObject()) throw Napi::TypeError::New(env, "input '" + name + "' must be a tensor {dtype, shape, data}");
    Napi::Object tensor = entry.As<Napi::Object>();
    Napi::Value data = tensor.Get("data");
    if (!data.IsTypedArray()) throw Napi::TypeError::New(env, "input '" + name + "': data must be a TypedArray");
    Napi::TypedArray array = data.As<Napi::TypedArray>();
    const DTypeName& dtype = byName(env, tensor.Get("dtype").ToString().Utf8Value());
    if (array.TypedArrayType() != dtype.arrayType) throw Napi::TypeError::New(env, "input '" + name + "': data's TypedArray kind does not match dtype " + dtype.name);
    Napi::Value shapeValue = tensor.Get("shape");
    if (!shapeValue.IsArray()) throw Napi::TypeError::New(env, "input '" + name + "': shape must be an array");
    Napi::Array shape = shapeValue.As<Napi::Array>();
    HostTensor host;
    host.dtype = dtype.dtype;
    for (uint32_t d = 0; d < shape.Length(); ++d) host.shape.push_back(shape.Get(d).As<Napi::Number>().Int64Value());
    host.data = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    host.bytes = array.ByteLength();
    auto reference = std::make_shared<Napi::ObjectReference>(Napi::Persistent(array.As<Napi::Object>()));
    out.references.push_back(reference);
    out.tensors.emplace_back(name, host);
  }
  return out;
}

Napi::Object tensorToJs(Napi::Env env, const HostTensor& host) {
  const DTypeName& dtype = byDType(host.dtype);
  Napi::ArrayBuffer buffer;
  if (host.bytes == 0) {
    buffer = Napi::ArrayBuffer::New(env, 0);
  } else {
    // Zero-copy: the ArrayBuffer owns a reference to the engine tensor and drops it when collected.
    auto* keep = new std::shared_ptr<void>(host.owner);
    buffer = Napi::ArrayBuffer::New(env, host.data, host.bytes, [](Napi::Env, void*, std::shared_ptr<void>* owner) { delete owner; }, keep);
  }
  size_t elementSize = 1;
  switch (dtype.arrayType) {
    case napi_float64_array:
    case napi_bigint64_array: elementSize = 8; break;
    case napi_float32_array:
    case napi_int32_array: elementSize = 4; break;
    case napi_uint16_array: elementSize = 2; break;
    default: elementSize = 1;
  }
  napi_value array;
  napi_status status = napi_create_typedarray(env, dtype.arrayType, host.bytes / elementSize, buffer, 0, &array);
  NAPI_THROW_IF_FAILED(env, status, Napi::Object());
  Napi::Object tensor = Napi::Object::New(env);
  tensor.Set("dtype", dtype.name);
  Napi::Array shape = Napi::Array::New(env, host.shape.size());
  for (size_t d = 0; d < host.shape.size(); ++d) shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, static_cast<double>(host.shape[d])));
  tensor.Set("shape", shape);
  tensor.Set("data", Napi::Value(env, array));
  return tensor;
}

Napi::Object tensorsToJs(Napi::Env env, const NamedTensors& tensors) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, host] : tensors) out.Set(name, tensorToJs(env, host));
  return out;
}

// Runs `work` on a worker thread and settles a Promise with `convert(result)`, or rejects with the message.
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<Result()> work, std::function<Napi::Value(Napi::Env, Result&)> convert,
                std::vector<std::shared_ptr<Napi::ObjectReference>> keepAlive = {})
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), convert_(std::move(convert)),
        keepAlive_(std::move(keepAlive)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = work_();
    } catch (const pigg::Cancelled& error) {
      aborted_ = true;
      SetError(error.what());
    } catch (const std::exception& error) {
      SetError(error.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(convert_(env, result_));
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }
  void OnError(const Napi::Error& error) override {
    if (aborted_) error.Set("name", Napi::String::New(Env(), "AbortError"));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Result()> work_;
  std::function<Napi::Value(Napi::Env, Result&)> convert_;
  std::vector<std::shared_ptr<Napi::ObjectReference>> keepAlive_;
  Result result_{};
  bool aborted_ = false;
};

template <typename Result>
Napi::Promise schedule(Napi::Env env, std::function<Result()> work, std::function<Napi::Value(Napi::Env, Result&)> convert,
                       std::vector<std::shared_ptr<Napi::ObjectReference>> keepAlive = {}) {
  auto* worker = new PromiseWorker<Result>(env, std::move(work), std::move(convert), std::move(keepAlive));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// An engine result given as JSON text (reports, summaries), handed to JS as the object it describes.
Napi::Value jsonValue(Napi::Env env, std::string& text) {
  Napi::Function parse = env.Global().Get("JSON").As<Napi::Object>().Get("parse").As<Napi::Function>();
  return parse.Call({Napi::String::New(env, text)});
}

std::string stringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

std::vector<std::string> stringList(Napi::Env env, const Napi::Value& value, const char* what) {
  std::vector<std::string> out;
  if (value.IsUndefined()) return out;
  if (!value.IsArray()) throw Napi::TypeError::New(env, std::string(what) + " must be an array of strings");
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(array.Get(i).ToString().Utf8Value());
  return out;
}

Napi::Value undefinedResult(Napi::Env env, bool&) { return env.Undefined(); }

// Calls `each` for every entry of the per-row generate option `key` (absent: never).
void forEachRow(Napi::Env env, const Napi::Value& rows, const char* key, const std::function<void(const Napi::Value&)>& each) {
  if (isNone(rows)) return;
  if (!rows.IsArray()) throw Napi::TypeError::New(env, std::string("generate option '") + key + "' must be an array with one entry per row");
  Napi::Array array = rows.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) each(array.Get(i));
}

// One row's sampling settings (options.h); null/undefined: greedy.
pigg::api::SamplingOptions samplingRow(Napi::Env env, const Napi::Value& value) {
  return readOptions<pigg::api::SamplingOptions>(env, value, "sampling option");
}

// The cancellation handle of one call: JS aborts it from an AbortSignal's listener while the worker runs.
class NativeControl : public Napi::ObjectWrap<NativeControl> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeControl", {InstanceMethod("cancel", &NativeControl::Cancel), InstanceMethod("progress", &NativeControl::Progress)});
  }
  NativeControl(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeControl>(info), control_(std::make_shared<pigg::api::CallControl>()) {}
  const std::shared_ptr<pigg::api::CallControl>& control() const { return control_; }

  static Napi::FunctionReference constructor;

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    control_->cancel();
    return info.Env().Undefined();
  }
  Napi::Value Progress(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), control_->progress.load()); }
  std::shared_ptr<pigg::api::CallControl> control_;
};

Napi::FunctionReference NativeControl::constructor;

// A compiled grammar held by JS; generate rows name it.
class NativeGrammar : public Napi::ObjectWrap<NativeGrammar> {
 public:
  static Napi::Function Init(Napi::Env env) { return DefineClass(env, "NativeGrammar", {}); }
  NativeGrammar(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGrammar>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "NativeGrammar is created by createGrammar()");
    grammar_ = *info[0].As<Napi::External<std::shared_ptr<const pigg::api::Grammar>>>().Data();
  }
  const std::shared_ptr<const pigg::api::Grammar>& grammar() const { return grammar_; }
  static Napi::FunctionReference constructor;

 private:
  std::shared_ptr<const pigg::api::Grammar> grammar_;
};

Napi::FunctionReference NativeGrammar::constructor;

// The wrapped object of class T in `value`, or a TypeError naming `what`.
template <typename T>
T* unwrapAs(Napi::Env env, const Napi::Value& value, const char* what) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(T::constructor.Value())) {
    throw Napi::TypeError::New(env, std::string(what) + " must be a value made by pigg's engine");
  }
  return T::Unwrap(value.As<Napi::Object>());
}

// The control passed as argument `index` (undefined / null: none).
std::shared_ptr<pigg::api::CallControl> controlArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined() || info[index].IsNull()) return nullptr;
  return unwrapAs<NativeControl>(info.Env(), info[index], "control")->control();
}

class NativeTrainer : public Napi::ObjectWrap<NativeTrainer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {InstanceMethod("step", &NativeTrainer::Step), InstanceMethod("gradients", &NativeTrainer::Gradients),
                        InstanceMethod("save", &NativeTrainer::Save), InstanceMethod("saveState", &NativeTrainer::SaveState),
                        InstanceMethod("loadState", &NativeTrainer::LoadState), InstanceMethod("info", &NativeTrainer::Info), InstanceMethod("dispose", &NativeTrainer::Dispose)});
  }

  NativeTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTrainer>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "NativeTrainer is created by model.createTrainer()");
    trainer_ = *info[0].As<Napi::External<std::shared_ptr<pigg::api::Trainer>>>().Data();
  }

  static Napi::FunctionReference constructor;

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "step() takes an array of micro-batches");
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<NamedTensors> batches;
    std::vector<std::shared_ptr<Napi::ObjectReference>> references;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      BorrowedInputs inputs = borrowTensors(env, list.Get(i));
      batches.push_back(inputs.tensors);
      references.insert(references.end(), inputs.references.begin(), inputs.references.end());
    }
    auto trainer = live(info.Env());
    auto control = controlArg(info, 1);
    return schedule<std::string>(env, [trainer, batches, control] { return pigg::api::trainerStep(*trainer, batches, control.get()); }, jsonValue, references);
  }

  Napi::Value Gradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    BorrowedInputs inputs = borrowTensors(env, info[0]);
    std::vector<std::string> names = stringList(env, info[1], "parameter names");
    NamedTensors tensors = inputs.tensors;
    auto trainer = live(info.Env());
    return schedule<NamedTensors>(
        env, [trainer, tensors, names] { return pigg::api::trainerGradients(*trainer, tensors, names); }, tensorsToJs, inputs.references);
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    const std::string dir = stringArg(info, 0, "directory");
    const bool merge = info.Length() > 1 && info[1].ToBoolean();
    auto trainer = live(info.Env());
    auto control = controlArg(info, 2);
    return schedule<bool>(info.Env(), [trainer, dir, merge, control] { pigg::api::trainerSave(*trainer, dir, merge, control.get()); return true; }, undefinedResult);
  }

  Napi::Value SaveState(const Napi::CallbackInfo& info) {
    const std::string dir = stringArg(info, 0, "directory");
    auto trainer = live(info.Env());
    auto control = controlArg(info, 1);
    return schedule<bool>(info.Env(), [trainer, dir, control] { pigg::api::trainerSaveState(*trainer, dir, control.get()); return true; }, undefinedResult);
  }

  Napi::Value LoadState(const Napi::CallbackInfo& info) {
    const std::string dir = stringArg(info, 0, "directory");
    auto trainer = live(info.Env());
    return schedule<bool>(info.Env(), [trainer, dir] { pigg::api::trainerLoadState(*trainer, dir); return true; }, undefinedResult);
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto trainer = live(info.Env());
    return schedule<std::string>(info.Env(), [trainer] { return pigg::api::trainerInfo(*trainer); }, jsonValue);
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    trainer_.reset();  // running calls hold their own reference and finish first
    return info.Env().Undefined();
  }

  std::shared_ptr<pigg::api::Trainer> live(Napi::Env env) {
    if (!trainer_) throw Napi::Error::New(env, "the trainer was disposed");
    return trainer_;
  }

  std::shared_ptr<pigg::api::Trainer> trainer_;
};

Napi::FunctionReference NativeTrainer::constructor;

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("info", &NativeModel::Info), InstanceMethod("forward", &NativeModel::Forward),
                        InstanceMethod("generate", &NativeModel::Generate), InstanceMethod("createTrainer", &NativeModel::CreateTrainer),
                        InstanceMethod("loadAdapter", &NativeModel::LoadAdapter), InstanceMethod("registerAdapter", &NativeModel::RegisterAdapter),
                        InstanceMethod("unregisterAdapter", &NativeModel::UnregisterAdapter), InstanceMethod("adapters", &NativeModel::Adapters),
                        InstanceMethod("setAdapterBudget", &NativeModel::SetAdapterBudget), InstanceMethod("dispose", &NativeModel::Dispose)});
  }

  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "NativeModel is created by load()");
    model_ = *info[0].As<Napi::External<std::shared_ptr<pigg::api::Model>>>().Data();
  }

  static Napi::FunctionReference constructor;

 private:
  std::shared_ptr<pigg::api::Model> live(Napi::Env env) {
    if (!model_) throw Napi::Error::New(env, "the model was disposed");
    return model_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    auto model = live(info.Env());
    return schedule<std::string>(info.Env(), [model] { return pigg::api::modelInfo(*model); }, jsonValue);
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = live(env);
    BorrowedInputs inputs = borrowTensors(env, info[0]);
    std::vector<std::string> outputs = stringList(env, info[1], "outputs");
    NamedTensors tensors = inputs.tensors;
    auto control = controlArg(info, 2);
    return schedule<NamedTensors>(
        env, [model, tensors, outputs, control] { return pigg::api::forward(*model, tensors, outputs, control.get()); }, tensorsToJs, inputs.references);
  }

  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = live(env);
    BorrowedInputs inputs = borrowTensors(env, info[0]);
    pigg::api::GenerateOptions options;
    OptionsReader reader(env, info[1], "generate option");
    describe(reader, options);
    // Per-row lists: null / undefined entries mean none for that row.
    forEachRow(env, reader.take("adapters"), "adapters", [&](const Napi::Value& v) { options.rowAdapters.push_back(v.IsString() ? v.As<Napi::String>().Utf8Value() : ""); });
    forEachRow(env, reader.take("grammars"), "grammars", [&](const Napi::Value& v) {
      options.rowGrammars.push_back(isNone(v) ? nullptr : unwrapAs<NativeGrammar>(env, v, "a grammar")->grammar());
    });
    forEachRow(env, reader.take("sampling"), "sampling", [&](const Napi::Value& v) { options.rowSampling.push_back(samplingRow(env, v)); });
    forEachRow(env, reader.take("rowControls"), "rowControls", [&](const Napi::Value& v) {
      options.rowControls.push_back(isNone(v) ? nullptr : unwrapAs<NativeControl>(env, v, "a row control")->control());
    });
    const Napi::Value callback = reader.take("onStep");
    reader.finish();
    // Streaming: each step's tokens reach JS through a thread-safe function. Its calls may arrive after the
    // promise settles (two event-loop queues), so JS takes the final tokens from the result.
    std::shared_ptr<Napi::ThreadSafeFunction> stream;
    if (!isNone(callback)) {
      if (!callback.IsFunction()) throw Napi::TypeError::New(env, "generate option 'onStep' must be a function");
      stream = std::make_shared<Napi::ThreadSafeFunction>(Napi::ThreadSafeFunction::New(env, callback.As<Napi::Function>(), "pigg generate onStep", 0, 1));
      options.onStep = [stream](const std::vector<int64_t>& tokens) {
        auto* step = new std::vector<int64_t>(tokens);
        stream->NonBlockingCall(step, [](Napi::Env env, Napi::Function callback, std::vector<int64_t>* step) {
          Napi::Array array = Napi::Array::New(env, step->size());
          for (size_t i = 0; i < step->size(); ++i) array.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>((*step)[i])));
          delete step;
          callback.Call({array});
        });
      };
    }
    NamedTensors tensors = inputs.tensors;
    auto control = controlArg(info, 2);
    return schedule<NamedTensors>(
        env,
        [model, tensors, options, control, stream] {
          struct Release {
            std::shared_ptr<Napi::ThreadSafeFunction> stream;
            ~Release() {
              if (stream) stream->Release();
            }
          } release{stream};
          return pigg::api::generate(*model, tensors, options, control.get());
        },
        tensorsToJs, inputs.references);
  }

  Napi::Value RegisterAdapter(const Napi::CallbackInfo& info) {
    auto model = live(info.Env());
    const std::string name = stringArg(info, 0, "adapter name"), dir = stringArg(info, 1, "adapter directory");
    return schedule<std::string>(info.Env(), [model, name, dir] { return pigg::api::registerAdapter(*model, name, dir); }, jsonValue);
  }

  Napi::Value UnregisterAdapter(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), pigg::api::unregisterAdapter(*live(info.Env()), stringArg(info, 0, "adapter name")));
  }

  Napi::Value Adapters(const Napi::CallbackInfo& info) {
    std::string list = pigg::api::listAdapters(*live(info.Env()));
    return jsonValue(info.Env(), list);
  }

  Napi::Value SetAdapterBudget(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "the adapter budget must be a number of bytes");
    pigg::api::setAdapterBudget(*live(info.Env()), info[0].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }

  Napi::Value LoadAdapter(const Napi::CallbackInfo& info) {
    auto model = live(info.Env());
    const std::string dir = stringArg(info, 0, "adapter directory");
    return schedule<bool>(info.Env(), [model, dir] { pigg::api::loadAdapter(*model, dir); return true; }, undefinedResult);
  }

  Napi::Value CreateTrainer(const Napi::CallbackInfo& info) {
    auto model = live(info.Env());
    const auto options = readOptions<pigg::api::TrainerOptions>(info.Env(), info[0], "trainer option");
    return schedule<std::shared_ptr<pigg::api::Trainer>>(
        info.Env(), [model, options] { return pigg::api::createTrainer(model, options); },
        [](Napi::Env env, std::shared_ptr<pigg::api::Trainer>& trainer) -> Napi::Value {
          auto external = Napi::External<std::shared_ptr<pigg::api::Trainer>>::New(env, &trainer);
          return NativeTrainer::constructor.New({external});
        });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();  // running calls hold their own reference and finish first
    return info.Env().Undefined();
  }

  std::shared_ptr<pigg::api::Model> model_;
};

Napi::FunctionReference NativeModel::constructor;

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string dir = stringArg(info, 0, "model directory");
  const auto options = readOptions<pigg::api::LoadOptions>(env, info[1], "load option");
  auto control = controlArg(info, 2);
  return schedule<std::shared_ptr<pigg::api::Model>>(
      env, [dir, options, control] { return pigg::api::loadModel(dir, options, control.get()); },
      [](Napi::Env env, std::shared_ptr<pigg::api::Model>& model) -> Napi::Value {
        auto external = Napi::External<std::shared_ptr<pigg::api::Model>>::New(env, &model);
        return NativeModel::constructor.New({external});
      });
}

Napi::Value Inspect(const Napi::CallbackInfo& info) {
  const std::string dir = stringArg(info, 0, "model directory");
  return schedule<std::string>(info.Env(), [dir] { return pigg::api::inspectCheckpoint(dir); }, jsonValue);
}

Napi::Value ReadTensors(const Napi::CallbackInfo& info) {
  const std::string path = stringArg(info, 0, "path");
  return schedule<NamedTensors>(info.Env(), [path] { return pigg::api::readTensors(path); }, tensorsToJs);
}

Napi::Value WriteTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = stringArg(info, 0, "path");
  BorrowedInputs inputs = borrowTensors(env, info[1]);
  NamedTensors tensors = inputs.tensors;
  return schedule<bool>(
      env, [path, tensors] { pigg::api::writeTensors(path, tensors); return true; },
      undefinedResult, inputs.references);
}

Napi::Value InitRandom(const Napi::CallbackInfo& info) {
  const std::string config = stringArg(info, 0, "config JSON");
  const std::string dir = stringArg(info, 1, "directory");
  std::string dtype = "bf16", device = "cpu";
  uint64_t seed = 0;
  OptionsReader reader(info.Env(), info[2], "initRandom option");
  reader("dtype", dtype);
  reader("device", device);
  reader("seed", seed);
  reader.finish();
  return schedule<bool>(info.Env(), [config, dir, dtype, device, seed] { pigg::api::initRandomCheckpoint(config, dir, dtype, device, seed); return true; },
                        undefinedResult);
}

template <typename T, typename Array>
std::vector<T> arrayField(Napi::Env env, const Napi::Object& object, const char* key, napi_typedarray_type type) {
  const Napi::Value value = object.Get(key);
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(env, std::string("grammar field '") + key + "' has the wrong array type");
  }
  Array array = value.As<Array>();
  return std::vector<T>(array.Data(), array.Data() + array.ElementLength());
}

Napi::Value CreateGrammar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "createGrammar() takes the grammar's tables");
  Napi::Object t = info[0].As<Napi::Object>();
  pigg::api::GrammarTables tables;
  tables.states = static_cast<int32_t>(t.Get("states").ToNumber().Int32Value());
  tables.start = static_cast<int32_t>(t.Get("start").ToNumber().Int32Value());
  tables.vocabSize = t.Get("vocabSize").ToNumber().Int64Value();
  tables.transitions = arrayField<int32_t, Napi::Int32Array>(env, t, "transitions", napi_int32_array);
  tables.accepting = arrayField<uint8_t, Napi::Uint8Array>(env, t, "accepting", napi_uint8_array);
  tables.tokenOffsets = arrayField<int32_t, Napi::Int32Array>(env, t, "offsets", napi_int32_array);
  tables.tokenBytes = arrayField<uint8_t, Napi::Uint8Array>(env, t, "bytes", napi_uint8_array);
  tables.special = arrayField<uint8_t, Napi::Uint8Array>(env, t, "special", napi_uint8_array);
  if (!t.Get("eosIds").IsArray()) throw Napi::TypeError::New(env, "grammar field 'eosIds' must be an array of token ids");
  Napi::Array eos = t.Get("eosIds").As<Napi::Array>();
  for (uint32_t i = 0; i < eos.Length(); ++i) tables.eosIds.push_back(eos.Get(i).ToNumber().Int64Value());
  std::shared_ptr<const pigg::api::Grammar> grammar;
  try {
    grammar = pigg::api::createGrammar(std::move(tables));
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, error.what());
  }
  return NativeGrammar::constructor.New({Napi::External<std::shared_ptr<const pigg::api::Grammar>>::New(env, &grammar)});
}

Napi::Value SampleTokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BorrowedInputs inputs = borrowTensors(env, info[0]);
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsNumber()) throw Napi::TypeError::New(env, "sampleTokens(logits, sampling[], draws)");
  std::vector<pigg::api::SamplingOptions> rows;
  Napi::Array list = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) rows.push_back(samplingRow(env, list.Get(i)));
  const int64_t draws = info[2].As<Napi::Number>().Int64Value();
  NamedTensors tensors = inputs.tensors;
  return schedule<NamedTensors>(env, [tensors, rows, draws] { return pigg::api::sampleTokens(tensors, rows, draws); }, tensorsToJs, inputs.references);
}

Napi::Value CreateControl(const Napi::CallbackInfo& info) { return NativeControl::constructor.New({}); }

Napi::Value Versions(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), pigg::api::versions()); }

Napi::Value DeviceMemory(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), pigg::api::deviceMemory(stringArg(info, 0, "device")));
}

// The defaults of every call's options, from the engine's structs (the only place they are written).
Napi::Value Defaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("load", pigg::binding::defaultsOf<pigg::api::LoadOptions>(env));
  out.Set("generate", pigg::binding::defaultsOf<pigg::api::GenerateOptions>(env));
  out.Set("sampling", pigg::binding::defaultsOf<pigg::api::SamplingOptions>(env));
  out.Set("trainer", pigg::binding::defaultsOf<pigg::api::TrainerOptions>(env));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pigg::api::initialize();
  Napi::Function modelClass = NativeModel::Init(env);
  NativeModel::constructor = Napi::Persistent(modelClass);
  NativeModel::constructor.SuppressDestruct();
  exports.Set("NativeModel", modelClass);
  Napi::Function trainerClass = NativeTrainer::Init(env);
  NativeTrainer::constructor = Napi::Persistent(trainerClass);
  NativeTrainer::constructor.SuppressDestruct();
  NativeControl::constructor = Napi::Persistent(NativeControl::Init(env));
  NativeControl::constructor.SuppressDestruct();
  NativeGrammar::constructor = Napi::Persistent(NativeGrammar::Init(env));
  NativeGrammar::constructor.SuppressDestruct();
  exports.Set("createControl", Napi::Function::New(env, CreateControl));
  exports.Set("sampleTokens", Napi::Function::New(env, SampleTokens));
  exports.Set("createGrammar", Napi::Function::New(env, CreateGrammar));
  exports.Set("initRandom", Napi::Function::New(env, InitRandom));
  exports.Set("load", Napi::Function::New(env, Load));
  exports.Set("inspect", Napi::Function::New(env, Inspect));
  exports.Set("readTensors", Napi::Function::New(env, ReadTensors));
  exports.Set("writeTensors", Napi::Function::New(env, WriteTensors));
  exports.Set("versions", Napi::Function::New(env, Versions));
  exports.Set("defaults", Napi::Function::New(env, Defaults));
  exports.Set("deviceMemory", Napi::Function::New(env, DeviceMemory));
  return exports;
}

}  // namespace

NODE_API_MODULE(pigg, Init)
