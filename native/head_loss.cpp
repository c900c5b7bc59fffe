#include "head_loss.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

namespace pigg {
namespace {

constexpr int64_t kChunkBytes = int64_t{64} << 20;

struct HeadLoss : public torch::autograd::Function<HeadLoss> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& normed, const at::Tensor& head, const at::Tensor& targets,
                            int64_t chunkRows) {
    const int64_t rows = normed.size(0), vocab = head.size(0);
    const int64_t step = chunkRows > 0 ? chunkRows : std::max<int64_t>(1, kChunkBytes / (4 * vocab));
    const bool headGrad = head.requires_grad();  // frozen (LoRA): no [vocab, hidden] gradient at all
    const at::Tensor valid = targets != -100;
    const at::Tensor safeTargets = targets.masked_fill(valid.logical_not(), 0).unsqueeze(1);
    const at::Tensor count = valid.sum().to(at::kFloat);
    // d(mean loss)/d(logits) = (softmax - one-hot) / count on counted rows, 0 on ignored ones.
    const at::Tensor rowWeight = (valid.to(at::kFloat) / count).unsqueeze(1);
    at::Tensor lossSum = at::zeros({}, normed.options().dtype(at::kFloat));
    at::Tensor gradNormed = at::empty_like(normed);
    at::Tensor gradHead;
    for (int64_t start = 0; start < rows; start += step) {
      const int64_t n = std::min(step, rows - start);
      const at::Tensor x = normed.narrow(0, start, n);
      const at::Tensor target = safeTargets.narrow(0, start, n);
      at::Tensor logits = at::linear(x, head).to(at::kFloat);  // as the unfused path: compute dtype, then fp32
      const at::Tensor lse = logits.logsumexp(1, true);
      lossSum += ((lse - logits.gather(1, target)) * valid.narrow(0, start, n).unsqueeze(1)).sum();
      logits.sub_(lse).exp_();                                   // softmax, in place
      logits.scatter_add_(1, target, at::full_like(lse, -1.0));  // minus the one-hot
      logits.mul_(rowWeight.narrow(0, start, n));
      const at::Tensor grad = logits.to(head.scalar_type());
      gradNormed.narrow(0, start, n).copy_(at::mm(grad, head));
      if (headGrad) gradHead = gradHead.defined() ? gradHead.addmm_(grad.t(), x) : at::mm(grad.t(), x);
    }
    ctx->saved_data["gradNormed"] = gradNormed;
    if (headGrad) ctx->saved_data["gradHead"] = gradHead;
    return lossSum / count;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list gradOutputs) {
    const at::Tensor scale = gradOutputs[0];
    // Taken out of the context, so autograd can keep the head's gradient as .grad without a copy.
    auto take = [&](const char* name) {
      auto it = ctx->saved_data.find(name);
      if (it == ctx->saved_data.end()) return at::Tensor();
      at::Tensor tensor = it->second.toTensor();
      ctx->saved_data.erase(it);
      return tensor.mul_(scale);  // the fp32 scale, rounded once into the gradient's dtype
    };
    at::Tensor gradNormed = take("gradNormed");
    at::Tensor gradHead = take("gradHead");
    return {gradNormed, gradHead, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fusedHeadLoss(const at::Tensor& normed, const at::Tensor& head, const at::Tensor& targets, int64_t chunkRows) {
  return HeadLoss::apply(normed, head, targets, chunkRows);
}

}  // namespace pigg
