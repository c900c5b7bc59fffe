// A caching allocator for host tensors. glibc hands every freed block above its mmap threshold (at most 32 MiB)
// back to the kernel, so each training step of a model with a 151,936-token vocabulary maps its logits, their
// gradient and the embedding gradients afresh and page-faults them in (measured: 86k faults and 40% of a CPU step
// in the kernel). This allocator keeps freed blocks of 64 KiB and more in size classes and hands them out again.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pigg {

struct CpuCacheStats {
  bool installed = false;
  int64_t liveBytes = 0;    // bytes in blocks handed out (size classes of 64 KiB and more)
  int64_t cachedBytes = 0;  // bytes in freed blocks kept for reuse
  int64_t limitBytes = 0;   // at most this much is kept
  int64_t hits = 0;         // allocations served from the cache
  int64_t misses = 0;       // allocations that went to the system
};

// Makes the caching allocator libtorch's CPU allocator (once; later calls do nothing). The cache keeps at most
// PIGG_CPU_CACHE_MB MiB of freed blocks (default: an eighth of the machine's memory, at most 2 GiB); 0 leaves
// libtorch's allocator in place.
void installCpuCachingAllocator();

// Returns the freed blocks the cache keeps to the system (when a model is released).
void releaseCpuCache();

CpuCacheStats cpuCacheStats();

}  // namespace pigg
