#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "control.h"
#include "error.h"
#include "storage.h"

namespace pigg {
namespace {

using json = nlohmann::json;

struct DTypeInfo {
  const char* name;
  at::ScalarType type;
  size_t size;
};

const DTypeInfo kDTypes[] = {
    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2}, {"F64", at::kDouble, 8},
    {"I64", at::kLong, 8},  {"I32", at::kInt, 4},   {"I16", at::kShort, 2},     {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},   {"BOOL", at::kBool, 1},
};

const DTypeInfo* findDType(const std::string& name) {
  for (const auto& info : kDTypes) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

[[noreturn]] void fail(const std::string& path, const std::string& why) { throw Error(path + ": " + why); }

bool isUnsignedInteger(const json& value) { return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0); }

TensorEntry parseEntry(const std::string& path, const std::string& name, const json& value) {
  const std::string where = "tensor '" + name + "'";
  if (!value.is_object()) fail(path, where + ": header entry is not a JSON object");
  if (!value.contains("dtype") || !value["dtype"].is_string()) fail(path, where + ": missing or non-string dtype");
  if (!value.contains("shape") || !value["shape"].is_array()) fail(path, where + ": missing or non-array shape");
  if (!value.contains("data_offsets") || !value["data_offsets"].is_array() || value["data_offsets"].size() != 2) {
    fail(path, where + ": data_offsets must be an array of two integers");
  }
  TensorEntry entry;
  entry.dtype = value["dtype"].get<std::string>();
  const DTypeInfo* info = findDType(entry.dtype);
  if (!info) fail(path, where + ": unknown dtype '" + entry.dtype + "'");
  uint64_t bytes = info->size;
  for (const auto& dim : value["shape"]) {
    if (!isUnsignedInteger(dim)) fail(path, where + ": shape entries must be non-negative integers");
    const uint64_t size = dim.get<uint64_t>();
    if (size > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(bytes, size, &bytes)) {
      fail(path, where + ": shape is too large (byte size overflows)");
    }
    entry.shape.push_back(static_cast<int64_t>(size));
  }
  for (const auto& offset : value["data_offsets"]) {
    if (!isUnsignedInteger(offset)) fail(path, where + ": data_offsets must be non-negative integers");
  }
  entry.begin = value["data_offsets"][0].get<uint64_t>();
  entry.end = value["data_offsets"][1].get<uint64_t>();
  if (entry.end < entry.begin) fail(path, where + ": data_offsets end " + std::to_string(entry.end) + " is before begin " + std::to_string(entry.begin));
  if (entry.end - entry.begin != bytes) {
    std::string shape;
    for (size_t i = 0; i < entry.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(entry.shape[i]);
    fail(path, where + ": shape [" + shape + "] x " + entry.dtype + " needs " + std::to_string(bytes) + " bytes but data_offsets span " +
                   std::to_string(entry.end - entry.begin));
  }
  return entry;
}

}  // namespace

at::ScalarType scalarTypeOf(const std::string& dtype) {
  const DTypeInfo* info = findDType(dtype);
  if (!info) throw Error("unknown safetensors dtype '" + dtype + "'");
  return info->type;
}

std::string dtypeNameOf(at::ScalarType type) {
  for (const auto& info : kDTypes) {
    if (info.type == type) return info.name;
  }
  throw Error(std::string("no safetensors dtype for ") + c10::toString(type));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->self_ = file;
  file->path_ = path;
  file->size_ = static_cast<size_t>(info.st_size);
  if (file->size_ < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(file->size_) + " bytes, shorter than the 8-byte header length (truncated?)");
  }
  file->mapping_ = mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (file->mapping_ == MAP_FAILED) {
    file->mapping_ = nullptr;
    fail(path, std::string("cannot map: ") + std::strerror(errno));
  }
  const auto* bytes = static_cast<const uint8_t*>(file->mapping_);
  uint64_t headerLength = 0;
  std::memcpy(&headerLength, bytes, 8);  // little-endian on every platform pigg builds for
  if (headerLength > file->size_ - 8) {
    fail(path, "header length " + std::to_string(headerLength) + " runs past the end of the file (" + std::to_string(file->size_) + " bytes; truncated?)");
  }
  file->dataStart_ = 8 + headerLength;
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + headerLength);
  } catch (const json::exception& error) {
    fail(path, std::string("header is not valid UTF-8 JSON: ") + error.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  const uint64_t dataSize = file->size_ - file->dataStart_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) fail(path, "__metadata__ value for '" + key + "' is not a string");
        file->metadata_[key] = item.get<std::string>();
      }
      continue;
    }
    TensorEntry entry = parseEntry(path, name, value);
    if (entry.end > dataSize) {
      fail(path, "tensor '" + name + "' ends at data byte " + std::to_string(entry.end) + ", past the end of the data section (" +
                     std::to_string(dataSize) + " bytes; truncated?)");
    }
    file->entries_.emplace(name, std::move(entry));
  }
  // Byte ranges must not overlap: two tensors sharing bytes is a corrupt or malicious file.
  std::vector<std::pair<const std::string*, const TensorEntry*>> ordered;
  for (const auto& [name, entry] : file->entries_) ordered.emplace_back(&name, &entry);
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  const std::string* furthest = nullptr;  // the tensor reaching furthest so far
  uint64_t furthestEnd = 0;
  for (const auto& [name, entry] : ordered) {
    if (entry->end == entry->begin) continue;  // empty tensors occupy no bytes
    if (furthest && entry->begin < furthestEnd) {
      fail(path, "tensors '" + *furthest + "' and '" + *name + "' have overlapping data_offsets");
    }
    if (entry->end > furthestEnd) {
      furthestEnd = entry->end;
      furthest = name;
    }
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) munmap(mapping_, size_);
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail(path_, "no tensor named '" + name + "'");
  const TensorEntry& entry = it->second;
  const DTypeInfo* info = findDType(entry.dtype);
  auto* data = static_cast<uint8_t*>(mapping_) + dataStart_ + entry.begin;
  auto options = at::TensorOptions().dtype(info->type).device(at::kCPU);
  if (reinterpret_cast<uintptr_t>(data) % info->size != 0) {
    // Misaligned data (a header not padded to 8): copy instead of viewing.
    return at::from_blob(data, entry.shape, options).clone();
  }
  auto keepAlive = self_.lock();
  return at::from_blob(data, entry.shape, [keepAlive](void*) {}, options);
}

TensorSource TensorSource::openFile(const std::string& path) {
  TensorSource source;
  source.files_.push_back(SafetensorsFile::open(path));
  for (const auto& [name, entry] : source.files_[0]->entries()) source.where_[name] = 0;
  return source;
}

TensorSource TensorSource::openDir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (!fs::exists(index)) {
    if (!fs::exists(single)) throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
    return openFile(single.string());
  }
  const json parsed = readJsonFile(index.string());
  if (!parsed.contains("weight_map") || !parsed["weight_map"].is_object()) throw Error(index.string() + ": missing weight_map object");
  TensorSource source;
  // Validate every entry first, then open the shards in file-name order (model-00001-of-N first), whatever the
  // order of the weight_map.
  std::map<std::string, std::string> firstTensorOf;  // shard file -> first tensor the index puts there
  for (const auto& [name, shard] : parsed["weight_map"].items()) {
    if (!shard.is_string()) throw Error(index.string() + ": weight_map entry for '" + name + "' is not a file name");
    const std::string file = shard.get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      throw Error(index.string() + ": shard name '" + file + "' must be a plain file name");
    }
    firstTensorOf.emplace(file, name);
  }
  std::map<std::string, size_t> shardIndex;
  for (const auto& [file, firstTensor] : firstTensorOf) {
    const fs::path shardPath = fs::path(dir) / file;
    if (!fs::exists(shardPath)) {
      throw Error(index.string() + ": shard '" + file + "' (holding tensor '" + firstTensor + "') does not exist");
    }
    shardIndex.emplace(file, source.files_.size());
    source.files_.push_back(SafetensorsFile::open(shardPath.string()));
  }
  for (const auto& [name, shard] : parsed["weight_map"].items()) {
    const size_t at = shardIndex.at(shard.get<std::string>());
    const auto& shardFile = source.files_[at];
    if (!shardFile->entries().count(name)) throw Error(shardFile->path() + ": index names tensor '" + name + "' but the shard does not contain it");
    source.where_[name] = at;
  }
  return source;
}

const TensorEntry& TensorSource::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint has no tensor named '" + name + "'");
  return files_[it->second]->entries().at(name);
}

const std::string& TensorSource::fileOf(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint has no tensor named '" + name + "'");
  return files_[it->second]->path();
}

at::Tensor TensorSource::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("checkpoint has no tensor named '" + name + "'");
  return files_[it->second]->tensor(name);
}

std::vector<std::string> TensorSource::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

std::vector<std::string> TensorSource::files() const {
  std::vector<std::string> out;
  for (const auto& file : files_) out.push_back(file->path());
  return out;
}

void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, at::Tensor>> sorted;
  for (const auto& [name, tensor] : tensors) sorted.emplace_back(name, tensor.detach().to(at::kCPU).contiguous());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : sorted) {
    const uint64_t bytes = tensor.numel() * tensor.element_size();
    header[name] = {{"dtype", dtypeNameOf(tensor.scalar_type())}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::string temp = path + ".tmp-" + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(temp + ": cannot create: " + std::strerror(errno));
    try {
      const uint64_t length = text.size();
      out.write(reinterpret_cast<const char*>(&length), 8);
      out.write(text.data(), static_cast<std::streamsize>(text.size()));
      for (const auto& [name, tensor] : sorted) {
        checkCancelled();  // an aborted save leaves no partial file
        out.write(static_cast<const char*>(tensor.data_ptr()), static_cast<std::streamsize>(tensor.numel() * tensor.element_size()));
      }
      out.flush();
      if (!out) throw Error(temp + ": write failed: " + std::strerror(errno));
    } catch (...) {
      out.close();
      std::filesystem::remove(temp);
      throw;
    }
  }
  {
    const int fd = ::open(temp.c_str(), O_RDONLY);
    if (fd >= 0) {
      fsync(fd);
      ::close(fd);
    }
  }
  std::filesystem::rename(temp, path);
}

}  // namespace pigg
