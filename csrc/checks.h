// Argument checks shared by the CPU and CUDA kernels, so both reject bad input with the same words.
#pragma once

#include <ATen/ATen.h>

namespace megabio {

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* a_name, const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " (", a.scalar_type(), ") and ", b_name, " (",
              b.scalar_type(), ") must have the same dtype");
}

// A per-channel vector (bias, LayerNorm weight) over the last dim of x: [H], x's dtype and device.
inline void check_channel_vector(const at::Tensor& x, const at::Tensor& v, const char* name) {
  check_same_dtype(x, v, "x", name);
  TORCH_CHECK(v.device() == x.device(), name, " must be on ", x.device(), " like x, got ", v.device());
  TORCH_CHECK(x.dim() >= 1 && v.dim() == 1 && v.size(0) == x.size(-1), name, " must be [", x.dim() ? x.size(-1) : 0,
              "] to match the last dim of x ", x.sizes(), ", got ", v.sizes());
}

}  // namespace megabio
