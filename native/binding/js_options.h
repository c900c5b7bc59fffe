// Call options between JS objects and the engine's option structs (native/options.h), driven by describe(): a
// reader fills a struct field by field with type checks and names every unknown key in one TypeError; a writer
// turns a default-constructed struct into the JS object of its defaults. Keys set to undefined or null count as
// absent. Part of the binding: it includes Node's headers, never torch's.
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "options.h"

namespace pigg::binding {

inline bool isNone(const Napi::Value& value) { return value.IsUndefined() || value.IsNull(); }

class OptionsReader {
 public:
  // `what` names the options in messages ("trainer option"); `path` prefixes nested keys ("lora.").
  OptionsReader(Napi::Env env, const Napi::Value& value, std::string what, std::string path = "")
      : env_(env), what_(std::move(what)), path_(std::move(path)) {
    if (isNone(value)) return;
    if (!value.IsObject() || value.IsArray() || value.IsFunction()) throw Napi::TypeError::New(env, what_ + "s must be an object");
    object_ = value.As<Napi::Object>();
  }

  void operator()(const char* key, bool& out) {
    const Napi::Value value = take(key);
    if (isNone(value)) return;
    if (!value.IsBoolean()) fail(key, "a boolean", value);
    out = value.As<Napi::Boolean>().Value();
  }
  void operator()(const char* key, double& out) {
    const Napi::Value value = take(key);
    if (!isNone(value)) out = number(key, value);
  }
  void operator()(const char* key, int& out) { integer(key, out); }
  void operator()(const char* key, int64_t& out) { integer(key, out); }
  void operator()(const char* key, uint64_t& out) { integer(key, out); }
  void operator()(const char* key, std::string& out) {
    const Napi::Value value = take(key);
    if (isNone(value)) return;
    if (!value.IsString()) fail(key, "a string", value);
    out = value.As<Napi::String>().Utf8Value();
  }
  void operator()(const char* key, std::vector<std::string>& out) {
    const Napi::Value value = take(key);
    if (isNone(value)) return;
    Napi::Array array = list(key, value);
    out.clear();
    for (uint32_t i = 0; i < array.Length(); ++i) {
      if (!array.Get(i).IsString()) fail(key, "an array of strings", value);
      out.push_back(array.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  void operator()(const char* key, UpdateMode& out) {
    std::string name;
    (*this)(key, name);
    if (name.empty()) return;
    try {
      out = parseUpdateMode(name);
    } catch (const std::exception& error) {
      throw Napi::TypeError::New(env_, what_ + " '" + path_ + key + "': " + error.what());
    }
  }
  // Stop ids: given ids replace the model's own (an empty array: never stop early).
  void stopIds(const char* key, std::vector<int64_t>& ids, bool& fromModel) {
    const Napi::Value value = take(key);
    if (isNone(value)) return;
    Napi::Array array = list(key, value);
    ids.clear();
    for (uint32_t i = 0; i < array.Length(); ++i) ids.push_back(checkedInteger<int64_t>(key, array.Get(i)));
    fromModel = false;
  }
  template <typename Describe>
  void object(const char* key, Describe describe) {
    const Napi::Value value = take(key);
    if (isNone(value)) return;
    OptionsReader nested(env_, value, what_, path_ + key + ".");
    describe(nested);
    nested.finish();
  }
  template <typename Describe>
  void optionalObject(const char* key, bool& present, Describe describe) {
    if (isNone(peek(key))) {
      take(key);
      return;
    }
    present = true;
    object(key, describe);
  }

  // A key the binding translates itself (JS objects such as grammars, controls, callbacks): its value.
  Napi::Value take(const char* key) {
    known_.push_back(key);
    return peek(key);
  }

  // Throws one TypeError naming every key that no field took, and the allowed ones.
  void finish() const {
    if (object_.IsEmpty()) return;
    std::vector<std::string> unknown;
    Napi::Array names = object_.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = names.Get(i).ToString().Utf8Value();
      if (std::find(known_.begin(), known_.end(), name) == known_.end() && !isNone(object_.Get(name))) unknown.push_back("'" + path_ + name + "'");
    }
    if (unknown.empty()) return;
    std::string message = "unknown " + what_ + (unknown.size() > 1 ? "s " : " ") + join(unknown) + " (allowed" +
                          (path_.empty() ? "" : " in '" + path_.substr(0, path_.size() - 1) + "'") + ": " + join(known_) + ")";
    throw Napi::TypeError::New(env_, message);
  }

 private:
  Napi::Value peek(const char* key) const { return object_.IsEmpty() ? env_.Undefined() : object_.Get(key); }

  [[noreturn]] void fail(const char* key, const char* expected, const Napi::Value& value) const {
    const std::string got = value.IsArray() ? "array" : std::string(napiTypeName(value.Type()));
    throw Napi::TypeError::New(env_, what_ + " '" + path_ + key + "' must be " + expected + ", got " + got);
  }

  double number(const char* key, const Napi::Value& value) const {
    if (!value.IsNumber()) fail(key, "a number", value);
    const double number = value.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(number)) fail(key, "a finite number", value);
    return number;
  }

  template <typename Int>
  Int checkedInteger(const char* key, const Napi::Value& value) const {
    const double number = this->number(key, value);
    const bool fits = std::floor(number) == number && number >= static_cast<double>(std::numeric_limits<Int>::lowest()) &&
                      number <= static_cast<double>(std::numeric_limits<Int>::max());
    if (!fits) fail(key, std::is_signed_v<Int> ? "an integer" : "an integer >= 0", value);
    return static_cast<Int>(number);
  }

  template <typename Int>
  void integer(const char* key, Int& out) {
    const Napi::Value value = take(key);
    if (!isNone(value)) out = checkedInteger<Int>(key, value);
  }

  Napi::Array list(const char* key, const Napi::Value& value) const {
    if (!value.IsArray()) fail(key, "an array", value);
    return value.As<Napi::Array>();
  }

  static const char* napiTypeName(napi_valuetype type) {
    switch (type) {
      case napi_undefined: return "undefined";
      case napi_null: return "null";
      case napi_boolean: return "boolean";
      case napi_number: return "number";
      case napi_string: return "string";
      case napi_symbol: return "symbol";
      case napi_object: return "object";
      case napi_function: return "function";
      case napi_external: return "external";
      case napi_bigint: return "bigint";
    }
    return "value";
  }

  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
  }

  Napi::Env env_;
  Napi::Object object_;
  std::string what_, path_;
  std::vector<std::string> known_;
};

class DefaultsWriter {
 public:
  explicit DefaultsWriter(Napi::Env env) : env_(env), out_(Napi::Object::New(env)) {}

  template <typename Value>
  void operator()(const char* key, const Value& value) {
    out_.Set(key, toJs(value));
  }
  void stopIds(const char* key, const std::vector<int64_t>& ids, bool fromModel) { out_.Set(key, fromModel ? env_.Null() : toJs(ids)); }
  template <typename Describe>
  void object(const char* key, Describe describe) {
    DefaultsWriter nested(env_);
    describe(nested);
    out_.Set(key, nested.out_);
  }
  // The defaults a given (empty) object stands for.
  template <typename Describe>
  void optionalObject(const char* key, bool, Describe describe) {
    object(key, describe);
  }

  Napi::Object result() const { return out_; }

 private:
  Napi::Value toJs(bool value) const { return Napi::Boolean::New(env_, value); }
  Napi::Value toJs(const std::string& value) const { return Napi::String::New(env_, value); }
  Napi::Value toJs(UpdateMode mode) const { return Napi::String::New(env_, updateModeName(mode)); }
  template <typename Number, typename = std::enable_if_t<std::is_arithmetic_v<Number>>>
  Napi::Value toJs(Number value) const {
    return Napi::Number::New(env_, static_cast<double>(value));
  }
  template <typename Item>
  Napi::Value toJs(const std::vector<Item>& items) const {
    Napi::Array array = Napi::Array::New(env_, items.size());
    for (size_t i = 0; i < items.size(); ++i) array.Set(static_cast<uint32_t>(i), toJs(items[i]));
    return array;
  }

  Napi::Env env_;
  Napi::Object out_;
};

// Reads `value` (an options object, or undefined / null for the defaults) into an options struct.
template <typename Options>
Options readOptions(Napi::Env env, const Napi::Value& value, const char* what) {
  Options options;
  OptionsReader reader(env, value, what);
  describe(reader, options);
  reader.finish();
  return options;
}

// The JS object of an options struct's defaults.
template <typename Options>
Napi::Object defaultsOf(Napi::Env env) {
  Options options;
  DefaultsWriter writer(env);
  describe(writer, options);
  return writer.result();
}

}  // namespace pigg::binding
