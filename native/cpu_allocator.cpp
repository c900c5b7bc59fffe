#include "cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace pigg {
namespace {

// Each block starts with a header holding its size class (0: too small to cache), so one deleter serves every
// block and libtorch's raw allocate/deallocate interface keeps working. 64 bytes keep the data 64-byte aligned,
// as libtorch's own allocator does.
constexpr size_t kHeader = 64;
constexpr size_t kAlignment = 64;
constexpr size_t kMinCached = 64 * 1024;

// Eight classes per power of two: a block is at most 12.5% larger than asked for.
size_t sizeClass(size_t bytes) {
  size_t octave = size_t{1} << (63 - __builtin_clzll(bytes));
  const size_t step = octave >> 3;
  return (bytes + step - 1) / step * step;
}

int64_t defaultLimit() {
  if (const char* env = std::getenv("PIGG_CPU_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && mb >= 0) return mb * 1024 * 1024;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
  const int64_t eighth = pages > 0 && pageSize > 0 ? static_cast<int64_t>(pages) * pageSize / 8 : 0;
  return std::min<int64_t>(eighth, int64_t{2} << 30);
}

void freeBlock(void* data);

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(int64_t limit) { stats_.installed = true; stats_.limitBytes = limit; }

  c10::DataPtr allocate(size_t bytes) override {
    if (bytes == 0) return {nullptr, nullptr, &freeBlock, c10::Device(c10::DeviceType::CPU)};
    const size_t cls = bytes >= kMinCached ? sizeClass(bytes) : 0;
    void* data = cls != 0 ? takeCached(cls) : nullptr;
    if (data == nullptr) {
      void* base = nullptr;
      const auto systemAllocate = [&] { return posix_memalign(&base, kAlignment, kHeader + (cls != 0 ? cls : bytes)) == 0 && base != nullptr; };
      if (!systemAllocate()) {
        releaseCached();  // what the cache holds may be what the system lacks
        TORCH_CHECK_WITH(OutOfMemoryError, systemAllocate(), "out of host memory: could not allocate ", bytes, " bytes");
      }
      std::memcpy(base, &cls, sizeof cls);
      data = static_cast<char*>(base) + kHeader;
      if (cls != 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.misses += 1;
        stats_.liveBytes += static_cast<int64_t>(cls);
      }
    }
    return {data, data, &freeBlock, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &freeBlock; }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  void release(void* data) {
    void* base = static_cast<char*>(data) - kHeader;
    size_t cls = 0;
    std::memcpy(&cls, base, sizeof cls);
    if (cls != 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.liveBytes -= static_cast<int64_t>(cls);
      if (stats_.cachedBytes + static_cast<int64_t>(cls) <= stats_.limitBytes) {
        free_[cls].push_back(data);
        stats_.cachedBytes += static_cast<int64_t>(cls);
        return;
      }
    }
    std::free(base);
  }

  void releaseCached() {
    std::unordered_map<size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      stats_.cachedBytes = 0;
    }
    for (auto& [cls, list] : blocks)
      for (void* data : list) std::free(static_cast<char*>(data) - kHeader);
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  void* takeCached(size_t cls) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = free_.find(cls);
    if (found == free_.end() || found->second.empty()) return nullptr;
    void* data = found->second.back();
    found->second.pop_back();
    stats_.cachedBytes -= static_cast<int64_t>(cls);
    stats_.liveBytes += static_cast<int64_t>(cls);
    stats_.hits += 1;
    return data;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  CpuCacheStats stats_;
};

// Never destroyed: blocks may be freed by static destructors after main returns.
CachingCpuAllocator* g_allocator = nullptr;
std::once_flag g_install;

void freeBlock(void* data) {
  if (data != nullptr) g_allocator->release(data);
}

}  // namespace

void installCpuCachingAllocator() {
  std::call_once(g_install, [] {
    const int64_t limit = defaultLimit();
    if (limit <= 0) return;
    g_allocator = new CachingCpuAllocator(limit);
    // Priority 1 outranks libtorch's own registration (0). Tensors it already made keep their own deleter.
    c10::SetCPUAllocator(g_allocator, 1);
  });
}

void releaseCpuCache() {
  if (g_allocator != nullptr) g_allocator->releaseCached();
}

CpuCacheStats cpuCacheStats() { return g_allocator != nullptr ? g_allocator->stats() : CpuCacheStats{}; }

}  // namespace pigg
