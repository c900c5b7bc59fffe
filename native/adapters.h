// Named LoRA adapters kept beside the base weights, never merged into them, so one base model serves many users:
// each row of a generate batch names its adapter (or none). Adapters live in host memory; copies on the device are
// kept under a byte budget, least recently used first out. Reading an adapter needs no model lock, so loading one
// never blocks the requests of others.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "layers.h"
#include "lora.h"

namespace pigg {

struct Adapter {
  std::string name, path;
  LoraWeights weights;                    // host fp32, per decoder linear
  std::vector<at::Tensor> deviceA, deviceB;  // device copies while resident (empty when not)
  int64_t bytes = 0;
  int64_t lastUsedMs = 0;                 // wall clock, ms since the epoch; 0 = never used
};

struct AdapterSummary {
  std::string name, path;
  int64_t rank = 0;
  double alpha = 0.0;
  int64_t bytes = 0;
  bool onDevice = false;
  int64_t lastUsedMs = 0;
};

std::shared_ptr<Adapter> readAdapter(TextDecoder& decoder, const std::string& name, const std::string& dir);

class AdapterRegistry {
 public:
  explicit AdapterRegistry(at::Device device) : device_(device) {}
  void add(std::shared_ptr<Adapter> adapter);  // replaces one of the same name
  bool remove(const std::string& name);
  std::vector<AdapterSummary> list() const;
  void setDeviceBudget(int64_t bytes);          // < 0: unlimited
  // The rows' adapters ("" = none) stacked per decoder linear on the device; empty when no row names one.
  // An unknown name is an Error naming it.
  std::vector<RowLora> gather(const std::vector<std::string>& rowNames);

 private:
  bool resident(const Adapter& adapter) const;
  void makeResident(Adapter& adapter);
  void evict(const std::vector<const Adapter*>& keep);
  at::Device device_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Adapter>> adapters_;
  int64_t budget_ = -1;
};

}  // namespace pigg
