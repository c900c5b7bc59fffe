#include "rope.h"

#include <algorithm>
#include <array>
#include <vector>

#include "error.h"

namespace pigg {

RopeIndex ropeIndex(const at::Tensor& inputIds, const at::Tensor& attentionMask, const at::Tensor& gridThw, const ModelConfig& config) {
  const int64_t batch = inputIds.size(0);
  const int64_t length = inputIds.size(1);
  const int64_t merge = config.vision.spatialMergeSize;
  auto ids = inputIds.accessor<int64_t, 2>();
  const bool hasMask = attentionMask.defined();
  const at::Tensor mask = hasMask ? attentionMask.to(at::kLong).contiguous() : at::Tensor();
  const int64_t* maskData = hasMask ? mask.data_ptr<int64_t>() : nullptr;
  RopeIndex out;
  out.positionIds = at::zeros({3, batch, length}, at::kLong);  // padded positions stay 0 (transformers 5.x)
  out.ropeDeltas = at::zeros({batch, 1}, at::kLong);
  out.ropeDeltasPadded = at::zeros({batch, 1}, at::kLong);
  out.maxPosition = at::zeros({batch}, at::kLong);
  auto pos = out.positionIds.accessor<int64_t, 3>();
  const int64_t images = gridThw.defined() ? gridThw.size(0) : 0;
  int64_t nextImage = 0;  // images are numbered across the whole batch, in order of appearance
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> kept;
    for (int64_t l = 0; l < length; ++l) {
      if (!hasMask || maskData[b * length + l] != 0) kept.push_back(l);
    }
    int64_t next = 0;  // first position of the next run
    int64_t maxPos = -1;
    size_t i = 0;
    while (i < kept.size()) {
      const int64_t token = ids[b][kept[i]];
      if (token == config.imageTokenId || token == config.videoTokenId) {
        if (nextImage >= images) throw Error("input_ids row " + std::to_string(b) + " has more image spans than image_grid_thw has rows (" + std::to_string(images) + ")");
        const int64_t t = gridThw[nextImage][0].item<int64_t>();
        const int64_t gh = gridThw[nextImage][1].item<int64_t>() / merge;
        const int64_t gw = gridThw[nextImage][2].item<int64_t>() / merge;
        ++nextImage;
        const int64_t count = t * gh * gw;
        if (i + count > kept.size()) throw Error("input_ids row " + std::to_string(b) + ": an image span is shorter than its grid needs (" + std::to_string(count) + " tokens)");
        for (int64_t ti = 0; ti < t; ++ti) {
          for (int64_t r = 0; r < gh; ++r) {
            for (int64_t c = 0; c < gw; ++c) {
              const int64_t l = kept[i++];
              if (ids[b][l] != token) throw Error("input_ids row " + std::to_string(b) + ": image span has " + std::to_string(count) + " tokens expected by its grid but is interrupted at position " + std::to_string(l));
              pos[0][b][l] = next + ti;
              pos[1][b][l] = next + r;
              pos[2][b][l] = next + c;
              maxPos = std::max({maxPos, next + ti, next + r, next + c});
            }
          }
        }
        next = maxPos + 1;
      } else {
        const int64_t l = kept[i++];
        pos[0][b][l] = pos[1][b][l] = pos[2][b][l] = next;
        maxPos = next++;
      }
    }
    out.maxPosition[b] = maxPos;
    out.ropeDeltas[b][0] = maxPos + 1 - static_cast<int64_t>(kept.size());
    out.ropeDeltasPadded[b][0] = maxPos + 1 - length;
  }
  if (nextImage != images) {
    throw Error("image_grid_thw has " + std::to_string(images) + " rows but input_ids contain " + std::to_string(nextImage) + " image spans");
  }
  return out;
}

at::Tensor textInvFreq(const TextConfig& config) {
  const auto exponents = at::arange(0, config.headDim, 2, at::kLong).to(at::kFloat) / static_cast<double>(config.headDim);
  return at::reciprocal(at::pow(config.ropeTheta, exponents));
}

std::pair<at::Tensor, at::Tensor> textRotary(const at::Tensor& positionIds, const at::Tensor& invFreq, const std::vector<int64_t>& mropeSection) {
  // Per axis: angle[j] = inv_freq[j] * position (one fp32 product, as transformers' K=1 matmul).
  const at::Tensor positions = positionIds.to(invFreq.device(), at::kFloat);           // [3, B, L]
  const at::Tensor freqs = positions.unsqueeze(-1) * invFreq.view({1, 1, 1, -1});   // [3, B, L, hd/2]
  // Interleaved layout: slot j takes H when j % 3 == 1 (j < 3*s_H), W when j % 3 == 2 (j < 3*s_W), else T.
  const int64_t half = invFreq.size(0);
  std::vector<int64_t> axis(half, 0);
  for (int64_t j = 0; j < half; ++j) {
    if (j % 3 == 1 && j < 3 * mropeSection[1]) axis[j] = 1;
    if (j % 3 == 2 && j < 3 * mropeSection[2]) axis[j] = 2;
  }
  const at::Tensor selector = at::tensor(axis, at::kLong).to(invFreq.device()).view({1, 1, 1, half}).expand({1, freqs.size(1), freqs.size(2), half});
  const at::Tensor chosen = freqs.gather(0, selector).squeeze(0);                      // [B, L, hd/2]
  const at::Tensor emb = at::cat({chosen, chosen}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor patchCoordinates(const at::Tensor& gridThw, int64_t mergeSize) {
  std::vector<int64_t> coords;
  for (int64_t i = 0; i < gridThw.size(0); ++i) {
    const int64_t t = gridThw[i][0].item<int64_t>();
    const int64_t h = gridThw[i][1].item<int64_t>();
    const int64_t w = gridThw[i][2].item<int64_t>();
    for (int64_t ti = 0; ti < t; ++ti) {
      for (int64_t br = 0; br < h / mergeSize; ++br) {
        for (int64_t bc = 0; bc < w / mergeSize; ++bc) {
          for (int64_t ir = 0; ir < mergeSize; ++ir) {
            for (int64_t ic = 0; ic < mergeSize; ++ic) {
              coords.push_back(br * mergeSize + ir);
              coords.push_back(bc * mergeSize + ic);
            }
          }
        }
      }
    }
  }
  return at::tensor(coords, at::kLong).view({-1, 2});
}

std::pair<at::Tensor, at::Tensor> visionRotary(const at::Tensor& coordinates, const VisionConfig& config) {
  const int64_t dim = config.headDim() / 2;
  const auto exponents = at::arange(0, dim, 2, at::kFloat) / static_cast<double>(dim);
  const at::Tensor invFreq = at::reciprocal(at::pow(config.ropeTheta, exponents));   // [dim/2]
  const at::Tensor coords = coordinates.to(at::kFloat);
  const at::Tensor rows = coords.select(1, 0).unsqueeze(1) * invFreq.unsqueeze(0);
  const at::Tensor cols = coords.select(1, 1).unsqueeze(1) * invFreq.unsqueeze(0);
  const at::Tensor angles = at::cat({rows, cols}, 1);                                 // [Np, dim]
  const at::Tensor emb = at::cat({angles, angles}, 1);                                // [Np, head_dim]
  return {emb.cos(), emb.sin()};
}

at::Tensor applyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

}  // namespace pigg
