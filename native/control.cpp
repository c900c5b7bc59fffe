#include "control.h"

namespace pigg {
namespace {
thread_local CallControl* current = nullptr;
}  // namespace

ControlScope::ControlScope(CallControl* control) : previous_(current) { current = control; }
ControlScope::~ControlScope() { current = previous_; }

void checkCancelled() {
  if (current && current->cancelled.load(std::memory_order_relaxed)) throw Cancelled();
}

void reportProgress(double fraction) {
  if (current) current->progress.store(fraction, std::memory_order_relaxed);
}

}  // namespace pigg
