// gelu(x + bias) over x [..., H], bias [H], exact (erf) or tanh; elementwise in float. The bias
// gradient is the column sum of grad_x, reduced in float by ATen. Training on GPU recomputes gelu' in the
// backward (memory, not arithmetic, bounds it there); the _with_derivative pair exists for parity with CPU.
#include "common.cuh"

namespace megabio {
namespace cuda {
namespace {

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kSqrt2_Pi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kCoeff = 0.044715f;

__device__ __forceinline__ float gelu(float v, bool tanh_approx) {
  if (tanh_approx) return 0.5f * v * (1.0f + tanhf(kSqrt2_Pi * (v + kCoeff * v * v * v)));
  return 0.5f * v * (1.0f + erff(v * kSqrt1_2));
}

__device__ __forceinline__ float gelu_derivative(float v, bool tanh_approx) {
  if (tanh_approx) {
    const float t = tanhf(kSqrt2_Pi * (v + kCoeff * v * v * v));
    return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kSqrt2_Pi * (1.0f + 3.0f * kCoeff * v * v);
  }
  const float cdf = 0.5f * (1.0f + erff(v * kSqrt1_2));
  const float pdf = expf(-0.5f * v * v) * kSqrt2_Pi * 0.5f;
  return cdf + v * pdf;
}

// gelu(x + bias) into out and, where `derivative` is not null, gelu'(x + bias) into it.
template <typename T>
__global__ void bias_gelu_forward_kernel(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ out,
                                         T* __restrict__ derivative, int64_t n, int64_t width, bool tanh_approx) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = to_float(x[i]) + to_float(bias[i % width]);
    out[i] = from_float<T>(gelu(v, tanh_approx));
    if (derivative != nullptr) derivative[i] = from_float<T>(gelu_derivative(v, tanh_approx));
  }
}

template <typename T>
__global__ void bias_gelu_backward_kernel(const T* __restrict__ grad, const T* __restrict__ x,
                                          const T* __restrict__ bias, T* __restrict__ dx, int64_t n, int64_t width,
                                          bool tanh_approx) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = to_float(x[i]) + to_float(bias[i % width]);
    dx[i] = from_float<T>(to_float(grad[i]) * gelu_derivative(v, tanh_approx));
  }
}

template <typename T>
__global__ void multiply_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    out[i] = from_float<T>(to_float(a[i]) * to_float(b[i]));
  }
}

at::Tensor bias_grad(const at::Tensor& dx) {
  return dx.reshape({-1, dx.size(-1)}).sum(0, /*keepdim=*/false, at::kFloat).to(dx.scalar_type());
}

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  check_cuda_floating(x, "x");
  check_channel_vector(x, bias, "bias");
}

// The forward of both ops below; `derivative` (same shape as out) is filled when given.
void forward(const at::Tensor& x, const at::Tensor& bias, bool tanh_approx, at::Tensor& out, at::Tensor* derivative) {
  const int64_t n = x.numel(), width = x.size(-1);
  if (n == 0) return;
  constexpr int threads = 256;
  MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "bias_gelu_forward_cuda", [&] {
    bias_gelu_forward_kernel<scalar_t><<<blocks_for(n, threads), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        derivative ? derivative->data_ptr<scalar_t>() : nullptr, n, width, tanh_approx);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void check_grad(const at::Tensor& grad, const at::Tensor& saved, const char* name) {
  check_same_dtype(grad, saved, "grad", name);
  TORCH_CHECK(grad.sizes() == saved.sizes(), "grad ", grad.sizes(), " and ", name, " ", saved.sizes(), " differ");
}

at::Tensor bias_gelu_forward(const at::Tensor& x, const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  forward(xc, bias.contiguous(), tanh_approx, out, nullptr);
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_forward_with_derivative(const at::Tensor& x, const at::Tensor& bias,
                                                                     bool tanh_approx) {
  check_inputs(x, bias);
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto out = at::empty_like(xc), derivative = at::empty_like(xc);
  forward(xc, bias.contiguous(), tanh_approx, out, &derivative);
  return {out, derivative};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward(const at::Tensor& grad, const at::Tensor& x,
                                                      const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  check_grad(grad, x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), gc = grad.contiguous(), bc = bias.contiguous();
  auto dx = at::empty_like(xc);
  const int64_t n = xc.numel(), width = x.size(-1);
  if (n > 0) {
    constexpr int threads = 256;
    MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "bias_gelu_backward_cuda", [&] {
      bias_gelu_backward_kernel<scalar_t><<<blocks_for(n, threads), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
          gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), n,
          width, tanh_approx);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {dx, bias_grad(dx)};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_from_derivative(const at::Tensor& grad,
                                                                      const at::Tensor& derivative) {
  check_cuda_floating(derivative, "derivative");
  check_grad(grad, derivative, "derivative");
  c10::cuda::CUDAGuard guard(grad.device());
  auto gc = grad.contiguous(), dc = derivative.contiguous();
  auto dx = at::empty_like(dc);
  const int64_t n = dc.numel();
  if (n > 0) {
    constexpr int threads = 256;
    MEGABIO_DISPATCH_CUDA_TYPES(grad.scalar_type(), "bias_gelu_backward_from_derivative_cuda", [&] {
      multiply_kernel<scalar_t><<<blocks_for(n, threads), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
          gc.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), n);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {dx, bias_grad(dx)};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CUDA, m) {
  m.impl("bias_gelu_forward", &bias_gelu_forward);
  m.impl("bias_gelu_backward", &bias_gelu_backward);
  m.impl("bias_gelu_forward_with_derivative", &bias_gelu_forward_with_derivative);
  m.impl("bias_gelu_backward_from_derivative", &bias_gelu_backward_from_derivative);
}

}  // namespace cuda
}  // namespace megabio
