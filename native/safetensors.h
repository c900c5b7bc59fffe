// Safetensors: a validating mmap reader (single file or a sharded checkpoint folder) and an atomic writer.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pigg {

struct TensorEntry {
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

// One .safetensors file, memory-mapped copy-on-write: tensors view the mapping without copying, and writing to
// them (training updates in place) touches private pages, never the file.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A CPU tensor over the mapped bytes; it keeps the mapping alive.
  at::Tensor tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t size_ = 0;
  uint64_t dataStart_ = 0;
  std::map<std::string, TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// A checkpoint's tensors: model.safetensors, or the shards named by model.safetensors.index.json.
class TensorSource {
 public:
  static TensorSource openDir(const std::string& dir);
  static TensorSource openFile(const std::string& path);

  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const TensorEntry& entry(const std::string& name) const;
  const std::string& fileOf(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;
  std::vector<std::string> names() const;
  std::vector<std::string> files() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;
};

at::ScalarType scalarTypeOf(const std::string& dtype);
std::string dtypeNameOf(at::ScalarType type);

// Writes tensors (sorted by name, header padded to 8 bytes) to path through a temp file and a rename.
void writeSafetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace pigg
