#include "layers.h"

namespace pigg {

at::Tensor Linear::operator()(const at::Tensor& x, bool training) const {
  at::Tensor y = at::linear(x, weight, bias);
  if (!hasLora()) return y;
  // The adapter runs in fp32 (its weights are fp32) and is added in the activation dtype, as peft does.
  at::Tensor input = x.to(loraA.scalar_type());
  if (training && loraDropout > 0.0) input = at::dropout(input, loraDropout, true);
  const at::Tensor delta = at::linear(at::linear(input, loraA), loraB) * loraScale;
  return y + delta.to(y.scalar_type());
}

}  // namespace pigg
