#include "vision.h"

#include <cmath>

#include "control.h"
#include "error.h"
#include "rope.h"

namespace pigg {
namespace {

Linear linearFrom(const Weights& weights, const std::string& prefix) {
  return Linear{weights[prefix + ".weight"], weights[prefix + ".bias"]};
}

}  // namespace

VisionTower::VisionTower(const VisionConfig& config, const Weights& weights) : config_(config) {
  const std::string vp = "model.visual.";
  patchWeight_ = weights[vp + "patch_embed.proj.weight"];
  patchBias_ = weights[vp + "patch_embed.proj.bias"];
  posTable_ = weights[vp + "pos_embed.weight"];
  for (int64_t i = 0; i < config.depth; ++i) {
    const std::string b = vp + "blocks." + std::to_string(i) + ".";
    blocks_.push_back(Block{weights[b + "norm1.weight"], weights[b + "norm1.bias"], weights[b + "norm2.weight"], weights[b + "norm2.bias"],
                            linearFrom(weights, b + "attn.qkv"), linearFrom(weights, b + "attn.proj"), linearFrom(weights, b + "mlp.linear_fc1"),
                            linearFrom(weights, b + "mlp.linear_fc2")});
  }
  auto mergerFrom = [&](const std::string& prefix, bool normAfterShuffle) {
    return Merger{weights[prefix + "norm.weight"], weights[prefix + "norm.bias"], linearFrom(weights, prefix + "linear_fc1"),
                  linearFrom(weights, prefix + "linear_fc2"), normAfterShuffle};
  };
  merger_ = mergerFrom(vp + "merger.", false);
  for (size_t j = 0; j < config.deepstackIndexes.size(); ++j) {
    deepstackMergers_.push_back(mergerFrom(vp + "deepstack_merger_list." + std::to_string(j) + ".", true));
  }
}

at::Tensor VisionTower::Merger::operator()(const at::Tensor& hidden, int64_t mergedWidth) const {
  // The main merger normalises each patch before the 2x2 concat; the DeepStack mergers normalise after it.
  at::Tensor y = normAfterShuffle ? layerNorm(hidden.reshape({-1, mergedWidth}), normWeight, normBias)
                                  : layerNorm(hidden, normWeight, normBias).reshape({-1, mergedWidth});
  return fc2(at::gelu(fc1(y)));  // exact (erf) GELU in the mergers
}

void VisionTower::validate(const at::Tensor& pixelValues, const at::Tensor& gridThw) const {
  if (!gridThw.defined()) throw Error("pixel_values given without image_grid_thw");
  if (gridThw.dim() != 2 || gridThw.size(1) != 3) throw Error("image_grid_thw must have shape [n_images, 3]");
  if (pixelValues.dim() != 2 || pixelValues.size(1) != config_.patchInputSize()) {
    throw Error("pixel_values must have shape [n_patches, " + std::to_string(config_.patchInputSize()) + "]");
  }
  const int64_t merge = config_.spatialMergeSize;
  int64_t rows = 0;
  for (int64_t i = 0; i < gridThw.size(0); ++i) {
    const int64_t t = gridThw[i][0].item<int64_t>(), h = gridThw[i][1].item<int64_t>(), w = gridThw[i][2].item<int64_t>();
    if (t < 1 || h < merge || w < merge || h % merge || w % merge) {
      throw Error("image_grid_thw row " + std::to_string(i) + " (" + std::to_string(t) + ", " + std::to_string(h) + ", " + std::to_string(w) +
                  ") is not a valid patch grid (h and w must be positive multiples of " + std::to_string(merge) + ")");
    }
    rows += t * h * w;
  }
  if (rows != pixelValues.size(0)) {
    throw Error("pixel_values has " + std::to_string(pixelValues.size(0)) + " rows but image_grid_thw implies " + std::to_string(rows));
  }
}

at::Tensor VisionTower::positionEmbedding(const at::Tensor& gridThw) const {
  // Bilinear, corner-aligned resize of the learned side x side table to each image's grid, summed in fp32 and
  // rounded once; then reordered into merge-block order and repeated per frame.
  const int64_t side = config_.positionSide();
  const int64_t merge = config_.spatialMergeSize;
  const at::Tensor table = posTable_.to(at::kFloat);
  const auto longOptions = at::TensorOptions().dtype(at::kLong).device(table.device());
  std::vector<at::Tensor> perImage;
  for (int64_t i = 0; i < gridThw.size(0); ++i) {
    const int64_t t = gridThw[i][0].item<int64_t>(), h = gridThw[i][1].item<int64_t>(), w = gridThw[i][2].item<int64_t>();
    auto axis = [&](int64_t n) {
      const at::Tensor coord = at::linspace(0, static_cast<double>(side - 1), n, at::TensorOptions().dtype(at::kFloat).device(table.device()));
      const at::Tensor floor = coord.to(at::kLong);
      const at::Tensor ceil = (floor + 1).clamp_max(side - 1);
      return std::make_tuple(floor, ceil, coord - floor.to(at::kFloat));
    };
    auto [rowFloor, rowCeil, dr] = axis(h);
    auto [colFloor, colCeil, dc] = axis(w);
    auto tap = [&](const at::Tensor& rows, const at::Tensor& cols, const at::Tensor& rowWeight, const at::Tensor& colWeight) {
      const at::Tensor index = (rows.unsqueeze(1) * side + cols.unsqueeze(0)).reshape({-1}).to(longOptions);
      const at::Tensor weight = (rowWeight.unsqueeze(1) * colWeight.unsqueeze(0)).reshape({-1, 1});
      return table.index_select(0, index) * weight;
    };
    at::Tensor grid = tap(rowFloor, colFloor, 1 - dr, 1 - dc) + tap(rowFloor, colCeil, 1 - dr, dc);
    grid = grid + tap(rowCeil, colFloor, dr, 1 - dc);
    grid = grid + tap(rowCeil, colCeil, dr, dc);
    grid = grid.view({h / merge, merge, w / merge, merge, -1}).permute({0, 2, 1, 3, 4}).reshape({h * w, -1});
    perImage.push_back(t > 1 ? grid.repeat({t, 1}) : grid);
  }
  return at::cat(perImage, 0);
}

at::Tensor VisionTower::attention(const Block& block, const at::Tensor& hidden, const at::Tensor& cos, const at::Tensor& sin,
                                  const std::vector<int64_t>& segments) const {
  const int64_t seq = hidden.size(0);
  const int64_t heads = config_.heads;
  const at::Tensor qkv = block.qkv(hidden).view({seq, 3, heads, -1}).permute({1, 0, 2, 3});  // [3, S, heads, hd]
  // Rotary in fp32, rounded back to the compute dtype.
  const at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  const at::Tensor q = applyRotary(qkv[0].to(at::kFloat), c, s).to(hidden.scalar_type()).transpose(0, 1);  // [heads, S, hd]
  const at::Tensor k = applyRotary(qkv[1].to(at::kFloat), c, s).to(hidden.scalar_type()).transpose(0, 1);
  const at::Tensor v = qkv[2].transpose(0, 1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(config_.headDim()));
  std::vector<at::Tensor> outputs;
  int64_t start = 0;
  for (int64_t length : segments) {  // bidirectional attention inside each image frame only
    outputs.push_back(at::scaled_dot_product_attention(q.narrow(1, start, length).unsqueeze(0), k.narrow(1, start, length).unsqueeze(0),
                                                       v.narrow(1, start, length).unsqueeze(0), {}, 0.0, false, scale)
                          .squeeze(0));
    start += length;
  }
  const at::Tensor out = (outputs.size() == 1 ? outputs[0] : at::cat(outputs, 1)).transpose(0, 1).reshape({seq, -1});
  return block.proj(out);
}

VisionOutputs VisionTower::forward(const at::Tensor& pixelValues, const at::Tensor& gridThw, bool keepIntermediates, bool withGrad) const {
  validate(pixelValues, gridThw);
  at::AutoGradMode gradMode(withGrad);
  const at::ScalarType dtype = patchWeight_.scalar_type();
  const at::Device device = patchWeight_.device();
  VisionOutputs out;
  // transformers casts the pixels to the weight dtype before the projection; the Conv3d kernel equals its
  // stride, so the projection is one GEMM over the flattened [C, Tp, P, P] rows.
  at::Tensor hidden = at::linear(pixelValues.to(device, dtype), patchWeight_.reshape({config_.hidden, -1}), patchBias_);
  const at::Tensor pos = positionEmbedding(gridThw).to(dtype);
  if (keepIntermediates) {
    out.patchEmbed = hidden;
    out.posEmbed = pos;
  }
  hidden = hidden + pos;
  auto [cos, sin] = visionRotary(patchCoordinates(gridThw, config_.spatialMergeSize), config_);
  cos = cos.to(device);
  sin = sin.to(device);
  if (keepIntermediates) {
    out.rotaryCos = cos;
    out.rotarySin = sin;
  }
  std::vector<int64_t> segments;
  for (int64_t i = 0; i < gridThw.size(0); ++i) {
    for (int64_t t = 0; t < gridThw[i][0].item<int64_t>(); ++t) segments.push_back(gridThw[i][1].item<int64_t>() * gridThw[i][2].item<int64_t>());
  }
  const int64_t mergedWidth = config_.hidden * config_.spatialMergeSize * config_.spatialMergeSize;
  for (int64_t i = 0; i < config_.depth; ++i) {
    checkCancelled();  // an abort returns within one block
    const Block& block = blocks_[i];
    hidden = hidden + attention(block, layerNorm(hidden, block.norm1Weight, block.norm1Bias), cos, sin, segments);
    hidden = hidden + block.fc2(at::gelu(block.fc1(layerNorm(hidden, block.norm2Weight, block.norm2Bias)), "tanh"));
    for (size_t j = 0; j < config_.deepstackIndexes.size(); ++j) {
      if (config_.deepstackIndexes[j] == i) out.deepstack.push_back(deepstackMergers_[j](hidden, mergedWidth));
    }
  }
  if (keepIntermediates) out.blocksOut = hidden;
  out.imageEmbeds = merger_(hidden, mergedWidth);
  return out;
}

}  // namespace pigg
