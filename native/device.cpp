#include "device.h"

#include "cpu_allocator.h"

#ifdef PIGG_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace pigg {

DeviceMemory deviceMemory(at::Device device) {
  DeviceMemory memory;
#ifdef PIGG_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    memory.available = true;
    memory.allocated = stats.allocated_bytes[0].current;  // index 0: aggregate over pools
    memory.reserved = stats.reserved_bytes[0].current;
    memory.peakAllocated = stats.allocated_bytes[0].peak;
  }
#endif
  (void)device;
  return memory;
}

void releaseCachedMemory(at::Device device) {
  if (device.is_cpu()) releaseCpuCache();
#ifdef PIGG_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)device;
}

void synchronize(at::Device device) {
#ifdef PIGG_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#endif
  (void)device;
}

}  // namespace pigg
