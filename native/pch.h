// Precompiled header for the engine sources: libtorch's ATen is the expensive part of every compile.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>
