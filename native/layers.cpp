#include "layers.h"

namespace pigg {

at::Tensor Linear::operator()(const at::Tensor& x, bool training, const RowLora* rows) const {
  at::Tensor y = at::linear(x, weight, bias);
  if (rows && rows->defined()) {
    // Gather each row's A and B, then two batched matmuls: one pass for a batch that mixes adapters.
    const at::Tensor a = rows->a.index_select(0, rows->rows), b = rows->b.index_select(0, rows->rows);
    const at::Tensor delta = at::bmm(at::bmm(x.to(at::kFloat), a.transpose(1, 2)), b.transpose(1, 2)) * rows->scale;
    y = y + delta.to(y.scalar_type());
  }
  if (!hasLora()) return y;
  // The adapter runs in fp32 (its weights are fp32) and is added in the activation dtype, as peft does.
  at::Tensor input = x.to(loraA.scalar_type());
  if (training && loraDropout > 0.0) input = at::dropout(input, loraDropout, true);
  const at::Tensor delta = at::linear(at::linear(input, loraA), loraB) * loraScale;
  return y + delta.to(y.scalar_type());
}

}  // namespace pigg
