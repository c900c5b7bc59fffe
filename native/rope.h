// Rotary positions: get_rope_index (3D text/image positions), interleaved M-RoPE tables for the text decoder,
// the 2D rotary tables of the vision tower, and the rotate-half application shared by both.
#pragma once
#include <ATen/ATen.h>

#include <utility>

#include "config.h"

namespace pigg {

struct RopeIndex {
  at::Tensor positionIds;       // int64 [3, B, L] (T, H, W); padded positions hold 0 (transformers 5.x)
  at::Tensor ropeDeltas;        // int64 [B, 1]: max position + 1 - attended tokens (transformers 5.x)
  at::Tensor ropeDeltasPadded;  // int64 [B, 1]: max position + 1 - padded row length (transformers 4.57)
  at::Tensor maxPosition;       // int64 [B]
};

// inputIds, attentionMask (may be undefined) and gridThw (may be undefined) are CPU int64 tensors.
RopeIndex ropeIndex(const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& gridThw, const ModelConfig& config);

// fp32 inverse frequencies, computed on the CPU the way transformers does (bit-equal).
at::Tensor textInvFreq(const TextConfig& config);

// Interleaved M-RoPE cos/sin, fp32 [B, L, head_dim], on the device of invFreq.
std::pair<at::Tensor, at::Tensor> textRotary(const at::Tensor& positionIds, const at::Tensor& invFreq, const std::vector<int64_t>& mropeSection);

// Per patch row (merge-block order) the (row, col) of the patch in its image grid: int64 [Np, 2].
at::Tensor patchCoordinates(const at::Tensor& gridThw, int64_t mergeSize);

// Vision 2D rotary cos/sin, fp32 [Np, head_dim].
std::pair<at::Tensor, at::Tensor> visionRotary(const at::Tensor& coordinates, const VisionConfig& config);

// x * cos + rotate_half(x) * sin, where cos/sin broadcast against x.
at::Tensor applyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace pigg
