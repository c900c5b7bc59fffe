// Device memory: what the CUDA caching allocator holds (for logs that show memory returning to its baseline
// between folds), handing cached blocks back when a model is released, and waiting for queued kernels (so
// reported timings cover the work, not its launch). On the CPU, releasing empties the host tensor cache
// (cpu_allocator.h); the rest are no-ops there and in builds against a CPU-only libtorch.
#pragma once
#include <ATen/ATen.h>

namespace pigg {

struct DeviceMemory {
  bool available = false;     // false on the CPU or without CUDA support
  int64_t allocated = 0;      // bytes in live tensors
  int64_t reserved = 0;       // bytes the caching allocator holds
  int64_t peakAllocated = 0;  // high-water mark of allocated
};

DeviceMemory deviceMemory(at::Device device);
void releaseCachedMemory(at::Device device);
void synchronize(at::Device device);

}  // namespace pigg
