// softmax(scale * x) over the last dim of x [b, h, sq, sk] with a bool mask (True = masked,
// broadcastable). One warp per row in the manner of Megatron's kernel: the row is held in registers,
// ELEMENTS = next power of two >= sk, so sk <= 2048. Fully masked rows give zeros.
#include "common.cuh"

namespace megabio {
namespace cuda {
namespace {

constexpr int kMaxKeys = 2048;
constexpr int kWarpsPerBlock = 4;

template <typename T, int ELEMENTS>
__global__ void softmax_forward_kernel(const T* __restrict__ x, const bool* __restrict__ mask, T* __restrict__ out,
                                       int64_t rows, int sk, int sq, int heads, int64_t ms0, int64_t ms1,
                                       int64_t ms2, int64_t ms3, float scale) {
  constexpr int kPerThread = ELEMENTS / kWarpSize > 0 ? ELEMENTS / kWarpSize : 1;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t q = row % sq, h = (row / sq) % heads, b = row / (static_cast<int64_t>(sq) * heads);
  const bool* mrow = mask ? mask + b * ms0 + h * ms1 + q * ms2 : nullptr;
  const T* xrow = x + row * sk;
  float values[kPerThread];
  float max = -INFINITY;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int j = lane + i * kWarpSize;
    float v = -INFINITY;
    if (j < sk && !(mrow && mrow[j * ms3])) v = to_float(xrow[j]) * scale;
    values[i] = v;
    max = fmaxf(max, v);
  }
  max = warp_max(max);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    values[i] = (max == -INFINITY) ? 0.0f : __expf(values[i] - max);
    sum += values[i];
  }
  sum = warp_sum(sum);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int j = lane + i * kWarpSize;
    if (j < sk) out[row * sk + j] = from_float<T>(values[i] * inv);
  }
}

template <typename T, int ELEMENTS>
__global__ void softmax_backward_kernel(const T* __restrict__ grad, const T* __restrict__ probs, T* __restrict__ dx,
                                        int64_t rows, int sk, float scale) {
  constexpr int kPerThread = ELEMENTS / kWarpSize > 0 ? ELEMENTS / kWarpSize : 1;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const int lane = threadIdx.x % kWarpSize;
  float g[kPerThread], p[kPerThread];
  float dot = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int j = lane + i * kWarpSize;
    g[i] = j < sk ? to_float(grad[row * sk + j]) : 0.0f;
    p[i] = j < sk ? to_float(probs[row * sk + j]) : 0.0f;
    dot += g[i] * p[i];
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int j = lane + i * kWarpSize;
    if (j < sk) dx[row * sk + j] = from_float<T>(scale * p[i] * (g[i] - dot));
  }
}

// Runs the statement with constexpr ELEMENTS = the smallest power of two >= sk (32 .. 2048).
#define MEGABIO_DISPATCH_ELEMENTS(sk, ...)                   \
  if ((sk) <= 32) {                                          \
    constexpr int ELEMENTS = 32;                             \
    __VA_ARGS__;                                             \
  } else if ((sk) <= 64) {                                   \
    constexpr int ELEMENTS = 64;                             \
    __VA_ARGS__;                                             \
  } else if ((sk) <= 128) {                                  \
    constexpr int ELEMENTS = 128;                            \
    __VA_ARGS__;                                             \
  } else if ((sk) <= 256) {                                  \
    constexpr int ELEMENTS = 256;                            \
    __VA_ARGS__;                                             \
  } else if ((sk) <= 512) {                                  \
    constexpr int ELEMENTS = 512;                            \
    __VA_ARGS__;                                             \
  } else if ((sk) <= 1024) {                                 \
    constexpr int ELEMENTS = 1024;                           \
    __VA_ARGS__;                                             \
  } else {                                                   \
    constexpr int ELEMENTS = 2048;                           \
    __VA_ARGS__;                                             \
  }

at::Tensor scaled_masked_softmax_forward(const at::Tensor& x, const std::optional<at::Tensor>& mask, double scale) {
  check_cuda_floating(x, "x");
  TORCH_CHECK(x.dim() == 4, "x must be [batch, heads, sq, sk], got ", x.sizes());
  const int sk = static_cast<int>(x.size(3));
  TORCH_CHECK(sk <= kMaxKeys, "the CUDA softmax kernel supports sk <= ", kMaxKeys, ", got ", sk);
  at::Tensor expanded;
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool, "mask must be bool (True = masked), got ", mask->scalar_type());
    TORCH_CHECK(mask->device() == x.device(), "mask must be on ", x.device());
    expanded = mask->expand(x.sizes());
  }
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  const int64_t rows = xc.numel() / std::max(sk, 1);
  if (rows == 0 || sk == 0) return out;
  const auto ms = expanded.defined() ? expanded.strides().vec() : std::vector<int64_t>(4, 0);
  const dim3 blocks((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), threads(kWarpsPerBlock * kWarpSize);
  auto stream = at::cuda::getCurrentCUDAStream();
  MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "scaled_masked_softmax_forward_cuda", [&] {
    const bool* mask_data = expanded.defined() ? expanded.data_ptr<bool>() : nullptr;
    MEGABIO_DISPATCH_ELEMENTS(sk, softmax_forward_kernel<scalar_t, ELEMENTS><<<blocks, threads, 0, stream>>>(
        xc.data_ptr<scalar_t>(), mask_data, out.data_ptr<scalar_t>(), rows, sk, static_cast<int>(x.size(2)),
        static_cast<int>(x.size(1)), ms[0], ms[1], ms[2], ms[3], static_cast<float>(scale)));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor scaled_masked_softmax_backward(const at::Tensor& grad, const at::Tensor& probs, double scale) {
  check_cuda_floating(probs, "probs");
  check_same_dtype(grad, probs, "grad", "probs");
  TORCH_CHECK(grad.sizes() == probs.sizes(), "grad ", grad.sizes(), " and probs ", probs.sizes(), " differ");
  const int sk = static_cast<int>(probs.size(-1));
  TORCH_CHECK(sk <= kMaxKeys, "the CUDA softmax kernel supports sk <= ", kMaxKeys, ", got ", sk);
  c10::cuda::CUDAGuard guard(probs.device());
  auto g = grad.contiguous(), p = probs.contiguous();
  auto dx = at::empty_like(p);
  const int64_t rows = p.numel() / std::max(sk, 1);
  if (rows == 0 || sk == 0) return dx;
  const dim3 blocks((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), threads(kWarpsPerBlock * kWarpSize);
  auto stream = at::cuda::getCurrentCUDAStream();
  MEGABIO_DISPATCH_CUDA_TYPES(p.scalar_type(), "scaled_masked_softmax_backward_cuda", [&] {
    MEGABIO_DISPATCH_ELEMENTS(sk, softmax_backward_kernel<scalar_t, ELEMENTS><<<blocks, threads, 0, stream>>>(
        g.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), rows, sk,
        static_cast<float>(scale)));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CUDA, m) {
  m.impl("scaled_masked_softmax_forward", &scaled_masked_softmax_forward);
  m.impl("scaled_masked_softmax_backward", &scaled_masked_softmax_backward);
}

}  // namespace cuda
}  // namespace megabio
