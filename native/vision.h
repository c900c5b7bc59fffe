// The Qwen3-VL vision tower: patch embedding (a GEMM over flattened patch rows), interpolated learned position
// embedding, 2D rotary, pre-LN ViT blocks with attention inside each image, the patch merger and the DeepStack
// mergers. It runs without autograd unless asked: pigg keeps the tower and the mergers ("aligner") frozen by default.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "checkpoint.h"
#include "config.h"
#include "layers.h"

namespace pigg {

struct VisionOutputs {
  at::Tensor imageEmbeds;               // [Np/4, D]
  std::vector<at::Tensor> deepstack;    // each [Np/4, D]
  // Intermediates, filled only when asked for (fixtures, debugging).
  at::Tensor patchEmbed, posEmbed, rotaryCos, rotarySin, blocksOut;
};

class VisionTower {
 public:
  VisionTower(const VisionConfig& config, const Weights& weights);
  // pixelValues [Np, C*Tp*P*P] (any float dtype, any device); gridThw CPU int64 [n, 3].
  VisionOutputs forward(const at::Tensor& pixelValues, const at::Tensor& gridThw, bool keepIntermediates, bool withGrad = false) const;
  // Checks pixel rows and grids against each other and the config; throws a precise Error.
  void validate(const at::Tensor& pixelValues, const at::Tensor& gridThw) const;

 private:
  struct Block {
    at::Tensor norm1Weight, norm1Bias, norm2Weight, norm2Bias;
    Linear qkv, proj, fc1, fc2;
  };
  struct Merger {
    at::Tensor normWeight, normBias;
    Linear fc1, fc2;
    bool normAfterShuffle;
    at::Tensor operator()(const at::Tensor& hidden, int64_t mergedWidth) const;
  };
  at::Tensor positionEmbedding(const at::Tensor& gridThw) const;
  at::Tensor attention(const Block& block, const at::Tensor& hidden, const at::Tensor& cos, const at::Tensor& sin,
                       const std::vector<int64_t>& segments) const;

  VisionConfig config_;
  at::Tensor patchWeight_, patchBias_;  // Conv3d [Hv, C, Tp, P, P]: a Linear over each flattened patch row
  at::Tensor posTable_;
  std::vector<Block> blocks_;
  Merger merger_;
  std::vector<Merger> deepstackMergers_;
};

}  // namespace pigg
