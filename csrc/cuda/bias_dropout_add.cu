// residual + dropout(x + bias), or dropout(x) alone, with a Philox keep-mask drawn from torch's CUDA
// generator (so the RNG tracker controls it); the mask is returned for the backward.
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/detail/UnpackRaw.cuh>
#include <curand_kernel.h>

#include <mutex>

#include "common.cuh"

namespace megabio {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // curand_uniform4 yields four numbers per call

template <typename T>
__global__ void bias_dropout_add_kernel(const T* __restrict__ x, const T* __restrict__ bias,
                                        const T* __restrict__ residual, T* __restrict__ out, bool* __restrict__ mask,
                                        int64_t n, int64_t width, float p, at::PhiloxCudaState philox) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const bool training = mask != nullptr;
  const float keep_scale = 1.0f / (1.0f - p);
  curandStatePhilox4_32_10_t state;
  if (training) {
    const auto seeds = at::cuda::philox::unpack(philox);
    curand_init(std::get<0>(seeds), tid, std::get<1>(seeds), &state);
  }
  for (int64_t base = tid * kUnroll; base < n; base += stride * kUnroll) {
    float4 u = make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    if (training) u = curand_uniform4(&state);
    const float draws[kUnroll] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + k;
      if (i >= n) break;
      float v = to_float(x[i]) + (bias ? to_float(bias[i % width]) : 0.0f);
      if (training) {
        const bool keep = draws[k] > p;  // curand_uniform4 is in (0, 1]
        mask[i] = keep;
        v = keep ? v * keep_scale : 0.0f;
      }
      out[i] = from_float<T>((residual ? to_float(residual[i]) : 0.0f) + v);
    }
  }
}

template <typename T>
__global__ void dropout_backward_kernel(const T* __restrict__ grad, const bool* __restrict__ mask, T* __restrict__ dx,
                                        int64_t n, float keep_scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    dx[i] = from_float<T>(mask[i] ? to_float(grad[i]) * keep_scale : 0.0f);
  }
}

std::tuple<at::Tensor, at::Tensor> bias_dropout_add_forward(const at::Tensor& x,
                                                            const std::optional<at::Tensor>& bias_opt,
                                                            const std::optional<at::Tensor>& residual_opt,
                                                            double p) {
  check_cuda_floating(x, "x");
  const bool has_residual = residual_opt.has_value() && residual_opt->defined();
  if (has_residual) {
    check_same_dtype(x, *residual_opt, "x", "residual");
    TORCH_CHECK(x.sizes() == residual_opt->sizes() && residual_opt->device() == x.device(), "x ", x.sizes(),
                " and residual ", residual_opt->sizes(), " must match in shape and device");
  }
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  const bool has_bias = bias_opt.has_value() && bias_opt->defined();
  const int64_t width = x.dim() ? x.size(-1) : 1;
  if (has_bias) {
    check_same_dtype(x, *bias_opt, "x", "bias");
    TORCH_CHECK(bias_opt->dim() == 1 && bias_opt->size(0) == width && bias_opt->device() == x.device(),
                "bias must be [", width, "] on ", x.device(), ", got ", bias_opt->sizes());
  }
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto rc = has_residual ? residual_opt->contiguous() : at::Tensor();
  auto bc = has_bias ? bias_opt->contiguous() : at::Tensor();
  auto out = at::empty_like(xc);
  const bool training = p > 0.0;
  auto mask = at::empty(training ? xc.sizes() : at::IntArrayRef{0}, xc.options().dtype(at::kBool));
  const int64_t n = xc.numel();
  if (n == 0) return {out, mask};
  const int blocks = blocks_for((n + kUnroll - 1) / kUnroll, kThreads);
  at::PhiloxCudaState philox;
  if (training) {
    auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(std::nullopt,
                                                                    at::cuda::detail::getDefaultCUDAGenerator());
    // Each thread consumes kUnroll numbers per grid-stride step.
    const int64_t steps = (n + static_cast<int64_t>(blocks) * kThreads * kUnroll - 1) /
                          (static_cast<int64_t>(blocks) * kThreads * kUnroll);
    std::lock_guard<std::mutex> lock(gen->mutex_);
    philox = gen->philox_cuda_state(steps * kUnroll);
  }
  MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "bias_dropout_add_forward_cuda", [&] {
    bias_dropout_add_kernel<scalar_t><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), has_bias ? bc.data_ptr<scalar_t>() : nullptr,
        has_residual ? rc.data_ptr<scalar_t>() : nullptr,
        out.data_ptr<scalar_t>(), training ? mask.data_ptr<bool>() : nullptr, n, width, static_cast<float>(p), philox);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, mask};
}

std::tuple<at::Tensor, at::Tensor> bias_dropout_add_backward(const at::Tensor& grad, const at::Tensor& mask,
                                                             double p, bool bias_grad) {
  check_cuda_floating(grad, "grad");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.sizes() == grad.sizes() && mask.device() == grad.device(),
              "mask must be a bool tensor of shape ", grad.sizes(), " (from the forward), got ", mask.scalar_type(),
              " ", mask.sizes());
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  c10::cuda::CUDAGuard guard(grad.device());
  auto gc = grad.contiguous(), mc = mask.contiguous();
  auto dx = at::empty_like(gc);
  const int64_t n = gc.numel();
  TORCH_CHECK(!bias_grad || grad.dim() >= 1, "a bias gradient needs grad of at least one dimension");
  // The bias gradient: a column sum of dx by ATen's reduction (float accumulation for half types).
  const auto bias_gradient = [&] {
    return bias_grad ? dx.view({-1, grad.size(-1)}).sum(0) : at::empty({0}, grad.options());
  };
  if (n == 0) return {dx, bias_gradient()};
  MEGABIO_DISPATCH_CUDA_TYPES(grad.scalar_type(), "bias_dropout_add_backward_cuda", [&] {
    dropout_backward_kernel<scalar_t><<<blocks_for(n, kThreads), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        gc.data_ptr<scalar_t>(), mc.data_ptr<bool>(), dx.data_ptr<scalar_t>(), n, static_cast<float>(1.0 / (1.0 - p)));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dx, bias_gradient()};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CUDA, m) {
  m.impl("bias_dropout_add_forward", &bias_dropout_add_forward);
  m.impl("bias_dropout_add_backward", &bias_dropout_add_backward);
}

}  // namespace cuda
}  // namespace megabio
