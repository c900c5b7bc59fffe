#include "adapters.h"

#include <algorithm>
#include <chrono>

#include "error.h"

namespace pigg {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::shared_ptr<Adapter> readAdapter(TextDecoder& decoder, const std::string& name, const std::string& dir) {
  if (name.empty()) throw Error("an adapter needs a non-empty name");
  auto adapter = std::make_shared<Adapter>();
  adapter->name = name;
  adapter->path = dir;
  adapter->weights = readLoraAdapter(decoder, dir);
  for (size_t i = 0; i < adapter->weights.a.size(); ++i) {
    if (!adapter->weights.a[i].defined()) continue;
    adapter->bytes += (adapter->weights.a[i].numel() + adapter->weights.b[i].numel()) * static_cast<int64_t>(sizeof(float));
  }
  return adapter;
}

bool AdapterRegistry::resident(const Adapter& adapter) const { return device_.is_cpu() || !adapter.deviceA.empty(); }

void AdapterRegistry::add(std::shared_ptr<Adapter> adapter) {
  std::lock_guard<std::mutex> lock(mutex_);
  adapters_[adapter->name] = std::move(adapter);
}

bool AdapterRegistry::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  return adapters_.erase(name) > 0;
}

std::vector<AdapterSummary> AdapterRegistry::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<AdapterSummary> out;
  for (const auto& [name, adapter] : adapters_) {
    out.push_back({name, adapter->path, adapter->weights.options.rank, adapter->weights.options.alpha, adapter->bytes, resident(*adapter),
                   adapter->lastUsedMs});
  }
  return out;
}

void AdapterRegistry::setDeviceBudget(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  budget_ = bytes;
  evict({});
}

void AdapterRegistry::makeResident(Adapter& adapter) {
  if (resident(adapter)) return;
  const auto& w = adapter.weights;
  adapter.deviceA.resize(w.a.size());
  adapter.deviceB.resize(w.b.size());
  for (size_t i = 0; i < w.a.size(); ++i) {
    if (!w.a[i].defined()) continue;
    adapter.deviceA[i] = w.a[i].to(device_);
    adapter.deviceB[i] = w.b[i].to(device_);
  }
}

// Drops device copies, least recently used first, until the resident bytes fit the budget; `keep` (the adapters
// of the batch being run) stay even when they alone exceed it.
void AdapterRegistry::evict(const std::vector<const Adapter*>& keep) {
  if (budget_ < 0 || device_.is_cpu()) return;
  std::vector<Adapter*> residents;
  int64_t bytes = 0;
  for (auto& [name, adapter] : adapters_) {
    if (adapter->deviceA.empty()) continue;
    residents.push_back(adapter.get());
    bytes += adapter->bytes;
  }
  std::sort(residents.begin(), residents.end(), [](const Adapter* x, const Adapter* y) { return x->lastUsedMs < y->lastUsedMs; });
  for (Adapter* adapter : residents) {
    if (bytes <= budget_) break;
    if (std::find(keep.begin(), keep.end(), adapter) != keep.end()) continue;
    adapter->deviceA.clear();
    adapter->deviceB.clear();
    bytes -= adapter->bytes;
  }
}

std::vector<RowLora> AdapterRegistry::gather(const std::vector<std::string>& rowNames) {
  std::vector<std::shared_ptr<Adapter>> used;  // the batch's distinct adapters, in order of first appearance
  std::vector<std::vector<at::Tensor>> usedA, usedB;  // their device tensors, held by this batch
  std::vector<int64_t> rowAdapter(rowNames.size(), 0);
  std::vector<float> rowScale(rowNames.size(), 0.0f);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t r = 0; r < rowNames.size(); ++r) {
      if (rowNames[r].empty()) continue;
      auto it = adapters_.find(rowNames[r]);
      if (it == adapters_.end()) throw Error("unknown adapter '" + rowNames[r] + "' (add it first)");
      auto position = std::find(used.begin(), used.end(), it->second);
      if (position == used.end()) position = used.insert(used.end(), it->second);
      rowAdapter[r] = position - used.begin();
      rowScale[r] = static_cast<float>(it->second->weights.scale());
    }
    if (used.empty()) return {};
    const int64_t now = nowMs();
    std::vector<const Adapter*> keep;
    for (auto& adapter : used) {
      makeResident(*adapter);
      adapter->lastUsedMs = now;
      keep.push_back(adapter.get());
      usedA.push_back(device_.is_cpu() ? adapter->weights.a : adapter->deviceA);
      usedB.push_back(device_.is_cpu() ? adapter->weights.b : adapter->deviceB);
    }
    evict(keep);
  }
  const size_t linears = usedA.front().size();
  int64_t rank = 0;
  for (const auto& adapter : used) rank = std::max(rank, adapter->weights.options.rank);
  // Rows without an adapter point at an extra all-zero slot: they never read another adapter's numbers (scale 0
  // times a NaN would still be NaN).
  const bool baseRows = std::any_of(rowNames.begin(), rowNames.end(), [](const std::string& n) { return n.empty(); });
  const int64_t count = static_cast<int64_t>(used.size());
  if (baseRows) {
    for (size_t r = 0; r < rowNames.size(); ++r) {
      if (rowNames[r].empty()) rowAdapter[r] = count;
    }
  }
  const int64_t slots = count + (baseRows ? 1 : 0);
  const auto rows = at::tensor(rowAdapter, at::kLong).to(device_);
  const auto scale = at::tensor(rowScale, at::kFloat).view({-1, 1, 1}).to(device_);
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device_);
  std::vector<RowLora> out(linears);
  for (size_t i = 0; i < linears; ++i) {
    auto shaped = std::find_if(usedA.begin(), usedA.end(), [&](const auto& a) { return a[i].defined(); });
    if (shaped == usedA.end()) continue;  // no adapter of this batch touches linear i
    const int64_t in = (*shaped)[i].size(1), outFeatures = usedB[shaped - usedA.begin()][i].size(0);
    // Ranks are zero-padded to the batch's largest: the padding adds exact zeros.
    at::Tensor a = at::zeros({slots, rank, in}, options), b = at::zeros({slots, outFeatures, rank}, options);
    for (int64_t u = 0; u < count; ++u) {
      if (!usedA[u][i].defined()) continue;
      const int64_t r = usedA[u][i].size(0);
      a[u].narrow(0, 0, r).copy_(usedA[u][i]);
      b[u].narrow(1, 0, r).copy_(usedB[u][i]);
    }
    out[i] = RowLora{a, b, rows, scale};
  }
  return out;
}

}  // namespace pigg
