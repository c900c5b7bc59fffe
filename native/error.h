// Every failure the engine reports is a pigg::Error with one precise message (file, tensor, what is wrong).
#pragma once
#include <stdexcept>
#include <string>

namespace pigg {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace pigg
