// The training loss through the output layer without a [rows, vocabulary] logits tensor: transformers'
// ForCausalLMLoss (logits in the compute dtype, cross-entropy in fp32, mean over the targets that are not -100)
// over lm_head, computed a chunk of rows at a time. Each chunk's gradients (of the rows and of the head) are made
// in the forward pass, while its logits exist, so no logits are kept or recomputed for the backward pass; the
// backward pass only scales them. For training, where every loss is backpropagated at once.
#pragma once
#include <ATen/ATen.h>

namespace pigg {

// normed: [rows, hidden]; head: [vocab, hidden] (same dtype); targets: int64 [rows], -100 = ignored.
// chunkRows: rows per chunk; 0 chooses about 64 MiB of fp32 logits per chunk.
at::Tensor fusedHeadLoss(const at::Tensor& normed, const at::Tensor& head, const at::Tensor& targets, int64_t chunkRows = 0);

}  // namespace pigg
