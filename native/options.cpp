#include "options.h"

#include "error.h"

namespace pigg {

UpdateMode parseUpdateMode(const std::string& name) {
  if (name == "master") return UpdateMode::Master;
  if (name == "kahan") return UpdateMode::Kahan;
  if (name == "stochastic") return UpdateMode::Stochastic;
  if (name == "pure" || name == "bf16") return UpdateMode::Pure;
  throw Error("unknown update mode '" + name + "' (use master, kahan, stochastic or pure)");
}

const char* updateModeName(UpdateMode mode) {
  switch (mode) {
    case UpdateMode::Master: return "master";
    case UpdateMode::Kahan: return "kahan";
    case UpdateMode::Stochastic: return "stochastic";
    case UpdateMode::Pure: return "pure";
  }
  return "master";
}

}  // namespace pigg
