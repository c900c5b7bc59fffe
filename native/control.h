// Cancellation and progress of one engine call. A call runs on one worker thread; ControlScope makes its control
// the thread's current one, so deep loops (decoder layers, decode steps, weight loading, saving) can check for an
// abort without every signature carrying it. Torch-free: the binding creates controls through api.h.
#pragma once
#include <atomic>

#include "error.h"

namespace pigg {

struct CallControl {
  std::atomic<bool> cancelled{false};
  std::atomic<double> progress{0.0};  // 0..1, for calls that report it (loading)
  void cancel() { cancelled = true; }
};

// Thrown where an aborted call stops; the binding reports it as an AbortError.
struct Cancelled : Error {
  Cancelled() : Error("the operation was aborted") {}
};

class ControlScope {
 public:
  explicit ControlScope(CallControl* control);
  ~ControlScope();
  ControlScope(const ControlScope&) = delete;
  ControlScope& operator=(const ControlScope&) = delete;

 private:
  CallControl* previous_;
};

// Throws Cancelled when the current call was aborted (a no-op outside a ControlScope).
void checkCancelled();
void reportProgress(double fraction);

}  // namespace pigg
